"""Crash safety: the fault-injection hook and recovery of half-finished writes."""

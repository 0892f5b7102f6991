"""Prefect deployments of nightrec's flows (schedules and per-environment parameters)."""

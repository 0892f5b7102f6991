"""Explanations of the published rows: reason codes, details and feature contributions."""

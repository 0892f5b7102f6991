"""Prefect flows (wiring only) and the `nightrec` command line that starts them."""

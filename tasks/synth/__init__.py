"""A synthetic shop with known signal (tastes, staples, weekly rhythm) for the demo and tests."""

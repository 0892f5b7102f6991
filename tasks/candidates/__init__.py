"""Candidate retrieval: per customer, items worth ranking, each with its source and score."""

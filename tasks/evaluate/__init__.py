"""Evaluation: the temporal protocol of DESIGN.md, ranking and beyond-accuracy metrics."""

"""Baseline recommenders every model is reported beside (popularity, repurchase, kNN, EASE)."""

"""Hyperparameter tuning: search spaces, objectives by model, Optuna studies, reports."""

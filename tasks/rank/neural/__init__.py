"""The PyTorch list ranker and its blend with LightGBM."""

"""Ranking: training windows, the LightGBM lambdarank ranker, the model registry, top-K."""

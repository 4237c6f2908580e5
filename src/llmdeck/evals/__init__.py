"""Evaluation: datasets, experiments run through the gateway, metrics and judges, review."""

"""Evaluators: measurements of a trained model, written to the run's metrics and report."""

"""Objectives: the training signal, computed from the model's output record."""

"""Modality encoders: one per modality, raw tensor -> feature vector."""

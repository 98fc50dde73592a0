"""Per-modality augmentations: Keras layers the model applies to its inputs in training only."""

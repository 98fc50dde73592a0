"""Per-modality augmentations: Keras layers the model applies to its inputs in training only.

All act on a batch ``[B, ...]`` in ``keras.ops``, draw every random number per sample from their
own seeded ``keras.random.SeedGenerator``, return the input unchanged unless ``training`` is true,
keep the input dtype and run under XLA. ``rate`` is the probability that a sample is augmented at
all (CoMM applies each sequence augmentation with p = 0.5).
"""

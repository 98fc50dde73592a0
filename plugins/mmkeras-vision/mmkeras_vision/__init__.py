"""mmkeras-vision: the bimodal Trifeatures dataset and SimCLR's image augmentations for mmkeras.

Importing this package imports neither Keras nor TensorFlow; mmkeras loads the components through
their entry points when a recipe names them.
"""

__version__ = "0.1.0"

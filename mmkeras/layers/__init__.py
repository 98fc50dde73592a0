"""Building blocks shared by encoders, heads, fusions, objectives and plugins."""

from mmkeras.layers.mlp import MLP
from mmkeras.layers.prediction import ResidualPredictionHead
from mmkeras.layers.transformer import TransformerBlock

__all__ = ["MLP", "ResidualPredictionHead", "TransformerBlock"]

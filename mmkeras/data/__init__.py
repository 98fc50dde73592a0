"""Datasets and the tf.data pipeline."""

from mmkeras.data.base import Dataset, DataSplit

__all__ = ["DataSplit", "Dataset"]

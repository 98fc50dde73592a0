"""Datasets and the tf.data pipeline."""

from mmkeras.data.base import DataSplit, Dataset

__all__ = ["DataSplit", "Dataset"]

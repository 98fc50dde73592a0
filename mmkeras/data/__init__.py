"""Datasets and the tf.data pipeline."""

from mmkeras.data.base import Dataset, DataSplit, ModalityInfo

__all__ = ["DataSplit", "Dataset", "ModalityInfo"]

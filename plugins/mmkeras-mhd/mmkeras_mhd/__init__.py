"""MHD (Multimodal Handwritten Digits) for mmkeras, built locally from Hershey fonts and eSpeak NG.

The dataset class is registered as ``mhd`` in the ``mmkeras.datasets`` entry-point group.
``MHD`` is imported lazily: worker processes import :mod:`mmkeras_mhd.generate` through this
package and must not pull in mmkeras (and with it TensorFlow).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["MHD"]


def __getattr__(name: str) -> Any:
    if name == "MHD":
        from mmkeras_mhd.dataset import MHD

        return MHD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

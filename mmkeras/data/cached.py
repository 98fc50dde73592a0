"""A dataset built once into ``.npz`` files in a cache folder, then read from there.

For datasets generated locally (rendered, simulated, synthesised): the first :meth:`prepare` (or
:meth:`load`) builds the splits that are not cached yet and writes each one atomically (a temporary
file renamed into place, so a killed build never leaves a partial file under the cache name); every
later call reads the cache. A cache file's name holds the dataset, its format version, the split
and the parameters the arrays depend on, ``<cache_name>_v<version>_<split>_<key>.npz``, so a
different size, seed or format is a different file and never a stale one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import Dataset, DataSplit
from mmkeras.safe_io import atomic_write


def default_data_dir() -> str:
    """``$MMKERAS_DATA_DIR`` if set, else ``~/.cache/mmkeras``."""
    return os.environ.get("MMKERAS_DATA_DIR") or str(Path.home() / ".cache" / "mmkeras")


class CachedDataset(Dataset):
    """Base of datasets built once into a cache folder (see the module docstring).

    A subclass sets :attr:`cache_name`, calls :meth:`set_cache_dir` in ``__init__`` and implements
    :meth:`cache_version`, :meth:`build` and :meth:`decode`; the default :meth:`cache_key` reads
    ``self.sizes[split]`` and ``self.seed``.
    """

    #: the folder under the data directory and the prefix of every cache file
    cache_name: str = ""
    cache_dir: Path

    def set_cache_dir(self, data_dir: str | None) -> None:
        """Cache under ``<data_dir>/<cache_name>/`` (``data_dir`` None: :func:`default_data_dir`)."""
        self.cache_dir = Path(data_dir if data_dir is not None else default_data_dir()) / self.cache_name

    # -- what a subclass provides -----------------------------------------------------------------
    def cache_version(self) -> int | str:
        """The version of the arrays' format; raise it whenever the builder's output changes."""
        raise NotImplementedError(f"{type(self).__name__} must implement cache_version()")

    def cache_key(self, split: str) -> str:
        """The parameters ``split``'s arrays depend on, as part of a file name."""
        return f"n{self.sizes[split]}_seed{self.seed}"  # type: ignore[attr-defined]

    def build(self, splits: list[str], progress: bool) -> Iterable[tuple[str, dict[str, np.ndarray]]]:
        """Make the arrays of ``splits`` (those not cached yet): ``(split, {name: array})`` pairs,
        each written to the cache as soon as it is yielded."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(splits, progress)")

    def decode(self, split: str, arrays: Any) -> DataSplit:
        """The :class:`DataSplit` of ``split`` from its cached arrays (an open ``.npz``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode(split, arrays)")

    # -- the cache --------------------------------------------------------------------------------
    def cache_path(self, split: str) -> Path:
        """The cache file of ``split``."""
        self._check_split(split)
        return self.cache_dir / f"{self.cache_name}_v{self.cache_version()}_{split}_{self.cache_key(split)}.npz"

    def prepare(self, progress: bool = True) -> None:
        """Build and cache the splits that are not cached yet (a cache hit does nothing)."""
        missing = [s for s in self.splits if not self.cache_path(s).exists()]
        if not missing:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for split, arrays in self.build(missing, progress):
            atomic_write(self.cache_path(split), lambda tmp, arrays=arrays: np.savez(tmp, **arrays))

    def open_cache(self, split: str) -> Any:
        """The cached arrays of ``split`` (built first if need be), as an open ``.npz``: use ``with``."""
        path = self.cache_path(split)
        if not path.exists():
            self.prepare()
        return np.load(path)

    def load(self, split: str) -> DataSplit:
        """One split in memory (built first if it is not cached)."""
        with self.open_cache(split) as arrays:
            return self.decode(split, arrays)

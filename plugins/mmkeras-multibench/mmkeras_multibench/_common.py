"""What the MultiBench readers share: a pickle reader that rebuilds numpy arrays and nothing else,
checks that name the file and key of the first problem, and the stand-in folder."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.plugin import DataError, default_data_dir

#: the only globals a data pickle may name: numpy's array, dtype and scalar rebuilders (NumPy 1 and 2
#: module paths) and the codec protocol-2 pickles use for bytes. Anything else could run code.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


class _ArraysOnly(pickle.Unpickler):
    def __init__(self, file: Any, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles of numpy arrays read as they were
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise DataError(
                f"{self.path}: the pickle names {module}.{name}; only numpy arrays, dicts and lists are read "
                "from data pickles (anything else could run code), so this file is refused"
            )
        return super().find_class(module, name)


def read_pickle(path: str | Path) -> Any:
    """The object in the pickle at ``path``, rebuilt with numpy arrays, dicts and lists only.

    Raises :class:`DataError` naming the file when it is missing, not a pickle, truncated, or names
    anything but numpy's rebuilders."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def key(mapping: Any, name: str, path: Path, where: str = "") -> Any:
    """``mapping[name]``, or a :class:`DataError` naming the file, the key path and the keys there are."""
    at = f"{where}[{name!r}]" if where else repr(name)
    if not isinstance(mapping, Mapping):
        raise DataError(f"{path}: expected a dict at {where or 'the top level'}, found {type(mapping).__name__}")
    if name not in mapping:
        keys = ", ".join(repr(k) for k in list(mapping)[:12])
        raise DataError(f"{path}: missing key {at}; the keys there are: {keys or '(none)'}")
    return mapping[name]


def array(
    value: Any, path: Path, where: str, shape: Sequence[int | None] | None = None, numeric: bool = True
) -> np.ndarray:
    """``value`` as a numpy array with ``shape`` (``None``: any size on that axis), or a
    :class:`DataError` naming the file, the key path, the expected and the found shape."""
    try:
        out = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: {where} is not an array ({exc})") from exc
    if numeric and not (np.issubdtype(out.dtype, np.number) or out.dtype == bool):
        raise DataError(f"{path}: {where} has dtype {out.dtype}; expected numbers")
    if shape is not None:
        ok = out.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, out.shape))
        if not ok:
            expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise DataError(f"{path}: {where} has shape {list(out.shape)}; expected {expected}")
    return out


def standin_dir(data_dir: str | None) -> Path:
    """Where stand-in files are written: ``<data_dir>/multibench_standin`` (default data dir: mmkeras's)."""
    return Path(data_dir if data_dir is not None else default_data_dir()) / "multibench_standin"

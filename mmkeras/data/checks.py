"""Checks of a loaded split: finite values and modalities that carry a signal (before anything trains
on it), and agreement with what its dataset declares (:func:`info_mismatches`, for tests).

One NaN cell in the inputs makes every weight NaN after the first step, and a modality that is 0 in
every row makes normalised features 0/0; both used to end in a "complete" run. Rows whose presence
mask is 0 are missing: they may hold anything and are not checked.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mmkeras.data.base import DataSplit, ModalityInfo
from mmkeras.errors import DataError


def nonfinite_rows(array: np.ndarray) -> np.ndarray:
    """bool [N]: the rows of ``array`` (float, [N, ...]) holding a NaN or an infinity.

    One pass of row sums (NaN and Inf propagate into a sum) without a temporary of the array's
    size; only rows whose sum is not finite (a bad value, or a finite row that overflowed) are
    then checked element by element.
    """
    flat = array.reshape(len(array), -1)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing sums are expected and rechecked
        bad = ~np.isfinite(flat.sum(axis=1))
    suspects = np.flatnonzero(bad)
    if len(suspects):
        bad[suspects] = ~np.isfinite(flat[suspects]).all(axis=1)
    return bad


def check_finite(
    split: DataSplit, split_name: str, dataset_name: str, on_error: Literal["raise", "skip"] = "raise"
) -> tuple[DataSplit, list[str]]:
    """``split`` checked for non-finite values in the float modalities' present rows, and for
    modalities that are 0 in every present row.

    ``on_error="raise"`` raises :class:`DataError` at the first modality with a NaN or an infinity
    (naming the dataset, split, modality, first bad row and how many rows are bad); ``"skip"``
    drops those rows and returns, with the remaining split, one line per dropped row (row indices
    are 0-based positions in ``split`` as given). A modality of zeros is an error either way.
    Returns ``(split, dropped)``; ``split`` is the same object when nothing was dropped.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    where = f"dataset {dataset_name}, split {split_name!r}"
    n = len(split)
    if n == 0:
        return split, []
    bad_by_modality: dict[str, np.ndarray] = {}
    for name, array in split.inputs.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        bad = nonfinite_rows(array) & (split.mask(name) > 0)
        if not bad.any():
            continue
        rows = np.flatnonzero(bad)
        if on_error == "raise":
            raise DataError(
                f"{where}: modality {name!r} has NaN or infinite values in {len(rows)} of {n} rows "
                f"(first: row {rows[0]}); fix or remove those rows (a row whose mask is 0 may hold anything)"
            )
        bad_by_modality[name] = bad
    dropped: list[str] = []
    if bad_by_modality:
        bad_any = np.logical_or.reduce(list(bad_by_modality.values()))
        for row in np.flatnonzero(bad_any):
            names = [m for m, bad in bad_by_modality.items() if bad[row]]
            dropped.append(f"{where}, row {row}: NaN or infinite values in modality {', '.join(map(repr, names))}")
        if bad_any.all():
            raise DataError(f"{where}: every row has NaN or infinite values; first: {dropped[0]}")
        split = split.subset(~bad_any)
    check_signal(split, split_name, dataset_name)
    return split, dropped


def check_signal(split: DataSplit, split_name: str, dataset_name: str) -> None:
    """Raise :class:`DataError` if a numeric modality is exactly 0 in every present row of ``split``."""
    for name, array in split.inputs.items():
        if not np.issubdtype(array.dtype, np.number) or array.size == 0:
            continue
        present = split.mask(name) > 0
        if not present.any():
            continue  # missing everywhere: nothing to normalise
        if name in split.masks and not present.all():
            signal = bool(np.any(array.reshape(len(array), -1).any(axis=1) & present))
        else:
            signal = bool(np.any(array))
        if not signal:
            raise DataError(
                f"dataset {dataset_name}, split {split_name!r}: modality {name!r} is 0 in every present row: it "
                "carries no signal; a modality of zeros makes normalised features undefined. Check the data, "
                "or leave the modality out of the recipe"
            )


def info_mismatches(info: dict[str, ModalityInfo], split: DataSplit) -> list[str]:
    """How a loaded ``split`` differs from a dataset's declared modalities (:meth:`Dataset.info`):
    one line per missing or undeclared modality and per shape or dtype that disagrees (a ``None``
    axis matches any size). Empty when the declaration holds."""
    problems = [f"modality {m!r} is declared but not loaded" for m in info if m not in split.inputs]
    problems += [f"modality {m!r} is loaded but not declared" for m in split.inputs if m not in info]
    for name, declared in info.items():
        if name not in split.inputs:
            continue
        array = split.inputs[name]
        shape = array.shape[1:]
        if len(shape) != len(declared.shape) or any(d is not None and d != s for d, s in zip(declared.shape, shape)):
            problems.append(f"modality {name!r}: declared shape {declared.shape}, loaded {shape}")
        try:
            same = np.dtype(declared.dtype) == array.dtype
        except TypeError:  # a name numpy does not know ("string")
            same = declared.dtype == array.dtype.name
        if not same:
            problems.append(f"modality {name!r}: declared dtype {declared.dtype}, loaded {array.dtype}")
    return problems

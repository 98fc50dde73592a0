"""What datasets declare (modalities, shapes, dtypes, splits, labels) as text: the output of
``mmkeras data info NAME`` and the page ``docs/datasets.md``, both made from :meth:`Dataset.info`
without building or loading any data."""

from __future__ import annotations

import inspect
import re
from typing import Any

from mmkeras.data.base import Dataset, ModalityInfo

#: every dataset mmkeras ships (core and first-party plugins) -> the parameters its docs entry uses
SHIPPED: dict[str, dict[str, Any]] = {
    "affect": {"corpus": "mosei"},
    "arrays": {"synthetic": True},
    "avmnist": {},
    "digit_captions": {"image_size": 28},  # the optional image modality shown too
    "mhd": {},
    "mhd_original": {},
    "mimic": {},
    "pendulum": {},
    "trifeatures": {},
}
#: shipped datasets whose modalities are the user's own: their docs entry is prose
USER_DATA: dict[str, str] = {
    "files": (
        "One modality per manifest column, its kind inferred from the file extensions or given in "
        "`modalities`:\n\n"
        "| kind | shape | dtype |\n|---|---|---|\n"
        "| `image` | `[H, W, 3]` (`image_mode: rgb`) or `[H, W, 1]` (`gray`); H, W = `image_size` | float32 |\n"
        "| `audio` | `[samples]` (`audio.features: raw`) or `[n_features, frames]` (`mel`, `mfcc`) | float32 |\n"
        "| `array` | the `.npy` files' shape | float32 |\n"
        "| `text` | `[text.max_tokens]` token ids | int32 |\n\n"
        "Labels: `label_kind` `integer` (int64 ids as written), `string` (int64 ids of the class names "
        "in sorted order), `regression` (float32), or `auto` (integer or string, from the column)."
    ),
    "tfrecord": "The modalities, shapes and dtypes recorded in the export's `spec.json` (`mmkeras data export`).",
}
REGENERATE = (
    "python -c 'from mmkeras.data.reference import datasets_markdown; print(datasets_markdown(), end=\"\")' "
    "> docs/datasets.md"
)


def shape_text(shape: tuple[int | None, ...]) -> str:
    """``[28, 28, 1]``; ``?`` for an axis only the data can tell."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    doc = re.sub(r":\w+:`", "`", doc).replace("``", "`")  # reST roles and literals -> Markdown code
    return " ".join(doc.split("\n\n")[0].split())


def splits_text(dataset: Dataset) -> str:
    sizes = getattr(dataset, "sizes", None)  # the generated datasets know their rows per split
    if isinstance(sizes, dict):
        return ", ".join(f"{s} ({sizes[s]:,} rows)" if s in sizes else s for s in dataset.splits)
    return ", ".join(dataset.splits)


def describe(name: str, dataset: Dataset, distribution: str | None = None) -> str:
    """The text ``mmkeras data info`` prints: summary, splits, a table of modalities, labels."""
    origin = f" ({distribution})" if distribution else ""
    lines = [f"{name}{origin}: {summary(type(dataset))}", f"splits: {splits_text(dataset)}"]
    info = dataset.info()
    if info is None:
        lines.append("modalities: not declared; `mmkeras data build` loads the data and prints their shapes")
    else:
        rows = [("modality", "shape", "dtype", "description")]
        rows += [(m, shape_text(i.shape), i.dtype, i.description) for m, i in info.items()]
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    labels = dataset.label_info()
    lines.append(f"labels: {labels if labels else 'none declared'}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _table(info: dict[str, ModalityInfo]) -> list[str]:
    lines = ["| modality | shape | dtype | description |", "|---|---|---|---|"]
    lines += [f"| `{m}` | `{shape_text(i.shape)}` | {i.dtype} | {i.description} |" for m, i in info.items()]
    return lines


def datasets_markdown() -> str:
    """``docs/datasets.md``: every shipped dataset's modalities, from its :meth:`~Dataset.info`."""
    from mmkeras.registry import registry

    lines = [
        "# Datasets",
        "",
        "The modalities every shipped dataset yields, as each declares them (`Dataset.info()`) without building",
        "any data; `mmkeras validate` checks a recipe's encoders against them. A shape is one row's (no batch",
        "axis); `?` is an axis only the data can tell. For other parameters, or a plugin's dataset, run",
        "`mmkeras data info NAME [--param KEY=VALUE ...]`.",
        "",
        f"This page is generated: `{REGENERATE}`.",
    ]
    for name in sorted({*SHIPPED, *USER_DATA}):
        entry = registry.entry("datasets", name)
        cls = registry.get("datasets", name)
        lines += ["", f"## `{name}` ({entry.distribution})", "", summary(cls), ""]
        files_from = getattr(cls, "files_from", None)  # datasets read from the user's files say where to get them
        if files_from:
            lines += [f"Files: {' '.join(files_from.split())}", ""]
        if name in USER_DATA:
            lines.append(USER_DATA[name])
            continue
        params = SHIPPED[name]
        dataset = cls(**params)
        given = ", ".join(f"`{k}: {str(v).lower() if isinstance(v, bool) else v}`" for k, v in params.items())
        lines += [f"With {given + ' (other parameters: defaults)' if given else 'its default parameters'}:", ""]
        lines += _table(dataset.info())
        lines += ["", f"Splits: {splits_text(dataset)}. Labels: {dataset.label_info() or 'none'}."]
    return "\n".join(lines) + "\n"

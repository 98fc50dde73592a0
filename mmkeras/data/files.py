"""The ``files`` dataset: the user's own files, listed in a CSV or JSONL manifest.

One manifest row is one sample; each modality column holds a file path (relative paths resolve
against the manifest's folder) or, for ``text`` columns, the text itself; an empty cell is a
missing modality (mask 0, zeros of the modality's shape). A ``split`` column names each row's
split (empty: ``train``); without one every row is ``train``, or ``test_fraction`` holds out a
seeded random share as ``test``.

Files are decoded by **readers**, chosen by file extension: the registry kind ``readers``
(entry-point group ``mmkeras.readers``, one entry per extension, listed by ``mmkeras plugins``):

- mmkeras's own: images (``png``, ``jpg``/``jpeg``, ``bmp``, ``gif``, ``webp``, ``tif``/``tiff``)
  through Pillow, imported only when an image is read; ``npy`` arrays through numpy;
- installed: e.g. ``wav = "mmkeras_audio.readers:read_audio"`` (the ``mmkeras-audio`` plugin reads
  WAV/FLAC/OGG); two distributions reading one extension are a clash, reported, never resolved;
- in-process: :func:`register_reader` (notebooks, tests), which wins over both.

A reader (see :class:`Reader`) is an object with ``kind`` (``"image"``, ``"audio"`` or ``"array"``), called as
``reader(path, **options) -> np.ndarray``; the options are the dataset's ``audio`` mapping for
audio, ``size``/``mode`` for images, none for arrays. It may offer ``validate(**options)`` (raise
ValueError on a bad option; called once before any file is read), ``shape(**options)`` (the shape
of what it returns, ``None`` for an axis only the file tells; :meth:`FilesDataset.info` uses it)
and ``backend`` (a name recorded in :attr:`FilesDataset.backends`). Any exception it raises makes
the row unreadable; a :class:`~mmkeras.errors.DataError` it raises (a missing library, say) stops
the whole load.

Labels (``label``: the column) are read as ``label_kind`` says: ``integer`` class ids (every
cell a whole number such as ``4`` or ``-1``; ``4.0`` is refused rather than guessed at), ``string``
class names (ids in sorted text order, so ``"10"`` comes before ``"2"``; see
:attr:`FilesDataset.label_names`), ``regression`` (float32 targets), or ``auto``: integers if
every label is an integer, strings if none is, and an error if the column mixes both.

An unreadable file, a file holding NaN or infinite values, an empty label or one that does not
fit ``label_kind`` stops with the manifest, the row number and line, the path or cell and what was
expected; with ``on_error: skip`` the row is left out, listed in :attr:`FilesDataset.skipped` and
announced in a one-line warning.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import os
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras.errors import ComponentError, DataError
from mmkeras.registry import registry

KINDS = ("image", "audio", "array", "text")
SPLIT_COLUMN = "split"
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")
#: audio files are recognised even before a reader is installed, to point at the plugin
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
AUDIO_PLUGIN_HINT = (
    "install the audio plugin: pip install mmkeras-audio (plugins/mmkeras-audio in the mmkeras repository)"
)
EXPECTED = {
    "image": "an image file Pillow can read (PNG, JPEG, ...)",
    "audio": "an audio file (WAV, FLAC, OGG)",
    "array": "a numeric .npy array",
}
TEXT_DEFAULTS = {"max_tokens": 32, "vocab_size": 10000, "level": "word"}
PAD, UNKNOWN = "<pad>", "<unk>"
RESERVED_COLUMNS = ("masks",)  # the pipeline's key for presence masks
LABEL_KINDS = ("auto", "integer", "string", "regression")
INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Skipped:
    """A row left out under ``on_error: skip``: 1-based data row, line in the manifest, why."""

    row: int
    line: int
    column: str | None
    path: str | None
    reason: str

    def __str__(self) -> str:
        where = f", column {self.column!r}" if self.column else ""
        what = f" {self.path}:" if self.path else ""
        return f"row {self.row} (line {self.line}){where}:{what} {self.reason}"


class Reader:
    """Base of file readers (entry-point group ``mmkeras.readers``, one entry per extension, naming an
    instance): ``reader(path, **options) -> np.ndarray``.

    ``kind`` is ``"image"``, ``"audio"`` or ``"array"``; ``backend`` names what decodes the files.
    Override :meth:`validate` to refuse bad options before any file is read (raise ValueError) and
    :meth:`shape` to declare the shape of what :meth:`__call__` returns (``None`` for an axis only
    the file tells).
    """

    kind: str = "array"
    backend: str = "?"

    def __call__(self, path: str, **options: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(path, **options)")

    def validate(self, **options: Any) -> None:
        """Raise ValueError on a bad option."""

    def shape(self, **options: Any) -> tuple[int | None, ...] | None:
        """The shape of one decoded file; None: not declared."""
        return None


class ImageReader(Reader):
    """PNG/JPEG/... -> float32 ``[H, W, 3]`` (``mode: rgb``) or ``[H, W, 1]`` (``gray``) in [0, 1]."""

    kind = "image"
    backend = "pillow"

    def validate(self, size: list[int] | None = None, mode: str = "rgb") -> None:
        if mode not in ("rgb", "gray"):
            raise ValueError(f"image_mode: {mode!r} is not one of ['rgb', 'gray']")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"image_size: expected [height, width] of positive ints, got {size}")

    def shape(self, size: list[int] | None = None, mode: str = "rgb") -> tuple[int | None, ...]:
        height, width = size if size is not None else (None, None)
        return (height, width, 3 if mode == "rgb" else 1)

    def __call__(self, path: str, size: list[int] | None = None, mode: str = "rgb") -> np.ndarray:
        try:
            from PIL import Image
        except ImportError:
            raise DataError(
                "files dataset: reading images needs Pillow: pip install pillow "
                "(the mmkeras-vision plugin depends on it too)"
            ) from None
        with Image.open(path) as image:
            image = image.convert("RGB" if mode == "rgb" else "L")
            if size is not None:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        return pixels if pixels.ndim == 3 else pixels[..., None]


class NpyReader(Reader):
    """``.npy`` -> float32 array of the stored shape (no pickles)."""

    kind = "array"
    backend = "numpy"

    def __call__(self, path: str) -> np.ndarray:
        array = np.load(path, allow_pickle=False)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"dtype {array.dtype} is not numeric")
        return array.astype(np.float32)

    @staticmethod
    def header_shape(path: str) -> tuple[int, ...]:
        """The stored array's shape, from the file's header alone."""
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(fh)[0]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(fh)[0]
        return np.load(path, mmap_mode="r", allow_pickle=False).shape  # version 3: no public header reader


#: mmkeras's own readers, declared as ``mmkeras.readers`` entry points in its pyproject.toml
read_image = ImageReader()
read_npy = NpyReader()


def register_reader(extension: str, reader: Any) -> Any:
    """Use ``reader`` for files ending in ``.extension`` in this process (wins over installed ones)."""
    return registry.add("readers", extension.lower().lstrip("."), reader, override=True)


def unregister_reader(extension: str) -> None:
    registry.remove("readers", extension.lower().lstrip("."))


def reader_for(extension: str) -> Any | None:
    """The reader of ``.extension`` files (the registry's ``readers``), or None if there is none."""
    extension = extension.lower().lstrip(".")
    registry.discover()
    entries = registry.entries["readers"].get(extension, [])
    if len(entries) > 1:
        who = ", ".join(f"{e.distribution} ({e.target})" for e in entries)
        raise DataError(f"files dataset: .{extension} files have more than one reader: {who}; uninstall one of them")
    if not entries:
        return None
    entry = entries[0]
    try:
        return entry.load()
    except ComponentError as exc:  # a broken plugin names itself instead of failing obscurely
        raise DataError(
            f"files dataset: the reader of .{extension} files ({entry.target}, distribution {entry.distribution}) "
            f"failed to load: {entry.error}"
        ) from exc


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Readers run in parallel threads; a multi-threaded BLAS in each (e.g. a mel filterbank
    product) oversubscribes the cores and was measured 7x slower on 2 cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"


def _extension(cell: str) -> str:
    return Path(cell).suffix.lower().lstrip(".")


def _count_nonfinite(array: np.ndarray) -> int:
    return int(np.size(array) - np.count_nonzero(np.isfinite(array))) if array.dtype.kind in "fc" else 0


def _is_finite_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


@dataclass
class _Row:
    number: int  # 1-based data row
    line: int  # line in the manifest where the row starts
    cells: dict[str, Any]


class FilesDataset(Dataset):
    """Your own files: a CSV or JSONL manifest, one row per sample, one column per modality
    (an image, audio or `.npy` path, or text); an empty cell is a missing modality.

    :attr:`label_kind` is the kind the labels are read as (``auto`` resolved; None without a
    label column). After :meth:`prepare` (called by :meth:`load`): :attr:`skipped` lists the rows
    left out under ``on_error: skip``; :attr:`label_names` maps label ids back to the manifest's
    string labels (sorted; None for integer and regression labels); :attr:`vocabulary` holds each
    text column's tokens by id (0 ``<pad>``, 1 ``<unk>``); :attr:`kinds` and :attr:`backends` say
    how each column was read.
    """

    def __init__(
        self,
        manifest: str,
        modalities: dict[str, str] | None = None,
        label: str | None = None,
        label_kind: Literal["auto", "integer", "string", "regression"] = "auto",
        test_fraction: float | None = None,
        seed: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
        image_size: list[int] | None = None,
        image_mode: Literal["rgb", "gray"] = "rgb",
        audio: dict[str, Any] | None = None,
        text: dict[str, Any] | None = None,
    ):
        if test_fraction is not None and not 0.0 < test_fraction < 1.0:
            raise ValueError(f"files dataset: test_fraction must be in (0, 1), got {test_fraction}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"files dataset: on_error must be 'raise' or 'skip', got {on_error!r}")
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"files dataset: label_kind must be one of {list(LABEL_KINDS)}, got {label_kind!r}")
        if image_size is not None:
            image_size = list(image_size) * 2 if len(image_size) == 1 else list(image_size)
        ImageReader().validate(image_size, image_mode)
        unknown = sorted(set(text or {}) - set(TEXT_DEFAULTS))
        if unknown:
            raise ValueError(
                f"files dataset: text.{unknown[0]}: unknown option; expected some of {sorted(TEXT_DEFAULTS)}"
            )
        self.text_options = {**TEXT_DEFAULTS, **(text or {})}
        if self.text_options["level"] not in ("word", "char"):
            raise ValueError(f"files dataset: text.level must be 'word' or 'char', got {self.text_options['level']!r}")
        for key, least in (("max_tokens", 1), ("vocab_size", 3)):  # 3: padding, unknown and one token
            if not isinstance(self.text_options[key], int) or self.text_options[key] < least:
                raise ValueError(f"files dataset: text.{key} must be an int >= {least}")
        self.manifest = Path(manifest).expanduser()
        self.root = self.manifest.parent
        self.label, self.seed, self.on_error = label, seed, on_error
        self.test_fraction = test_fraction
        self.image_options = {"size": image_size, "mode": image_mode}
        self.audio_options = dict(audio or {})
        self._reader_cache: dict[str, Any] = {}
        self.columns, self.rows = self._read_manifest()
        self.kinds = self._kinds(modalities)
        self.label_kind = self._resolve_label_kind(label_kind)
        self._label_problems = {row.number: p for row in self.rows if (p := self._label_problem(row))}
        if self._label_problems and on_error == "raise":  # found now, so `mmkeras validate` reports it
            raise DataError(self._raise_message(next(iter(self._label_problems.values()))))
        self.row_splits = self._assign_splits()
        self.splits = tuple(sorted(set(self.row_splits), key=lambda s: (s != "train", s)))
        self.skipped: list[Skipped] = []
        self.label_names: list[str] | None = None
        self.vocabulary: dict[str, list[str]] = {}
        self.backends: dict[str, str] = {}
        self._data: dict[str, DataSplit] | None = None

    # -- the manifest ----------------------------------------------------------------------
    def _where(self, row: _Row | None = None) -> str:
        return f"files dataset {self.manifest}" + (f": row {row.number} (line {row.line})" if row else "")

    def _read_manifest(self) -> tuple[list[str], list[_Row]]:
        if not self.manifest.is_file():
            raise DataError(f"files dataset: manifest not found: {self.manifest}")
        suffix = self.manifest.suffix.lower()
        if suffix == ".csv":
            columns, rows = self._read_csv()
        elif suffix in (".jsonl", ".ndjson"):
            columns, rows = self._read_jsonl()
        else:
            raise DataError(f"files dataset: manifest {self.manifest} must be a .csv or .jsonl file")
        if not rows:
            raise DataError(f"{self._where()}: no data rows")
        return columns, rows

    def _read_csv(self) -> tuple[list[str], list[_Row]]:
        with open(self.manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise DataError(f"{self._where()}: empty; expected a header line naming the columns")
            duplicated = [h for h, n in Counter(header).items() if n > 1]
            if duplicated:
                raise DataError(f"{self._where()}: column {duplicated[0]!r} appears twice in the header")
            rows, start = [], reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if not values:  # a blank line; a line of empty cells is a row with every modality missing
                    continue
                row = _Row(len(rows) + 1, line, {})
                if len(values) != len(header):
                    raise DataError(f"{self._where(row)}: {len(values)} fields, the header has {len(header)}")
                row.cells = dict(zip(header, values))
                rows.append(row)
        return header, rows

    def _read_jsonl(self) -> tuple[list[str], list[_Row]]:
        columns: dict[str, None] = {}
        rows = []
        with open(self.manifest, encoding="utf-8") as fh:
            for line, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                row = _Row(len(rows) + 1, line, {})
                try:
                    cells = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{self._where(row)}: not valid JSON: {exc.msg}") from None
                if not isinstance(cells, dict):
                    raise DataError(f"{self._where(row)}: expected a JSON object, got {type(cells).__name__}")
                columns.update(dict.fromkeys(cells))
                row.cells = cells
                rows.append(row)
        return list(columns), rows

    def _reader(self, ext: str) -> Any | None:
        if ext not in self._reader_cache:  # entry points are read once per extension, not per row
            self._reader_cache[ext] = reader_for(ext)
        return self._reader_cache[ext]

    @staticmethod
    def _cell(row: _Row, column: str) -> str | None:
        value = row.cells.get(column)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def _kinds(self, modalities: dict[str, str] | None) -> dict[str, str]:
        if self.label is not None and self.label not in self.columns:
            raise DataError(f"{self._where()}: no label column {self.label!r}; columns: {self.columns}")
        if modalities is not None:
            if not modalities:
                raise DataError(f"{self._where()}: modalities is empty; name at least one column")
            for column, kind in modalities.items():
                if column not in self.columns:
                    raise DataError(f"{self._where()}: modalities.{column}: no such column; columns: {self.columns}")
                if kind not in KINDS:
                    raise DataError(
                        f"{self._where()}: modalities.{column}: unknown kind {kind!r}; expected one of {list(KINDS)}"
                    )
            kinds = dict(modalities)
        else:
            kinds = {c: self._infer_kind(c) for c in self.columns if c not in (self.label, SPLIT_COLUMN)}
            if not kinds:
                raise DataError(f"{self._where()}: no modality columns besides the label and split")
        for column in kinds:
            if column in RESERVED_COLUMNS or column == self.label:
                raise DataError(f"{self._where()}: column {column!r} cannot be a modality (reserved or the label)")
        return kinds

    def _infer_kind(self, column: str) -> str:
        found: dict[str, _Row] = {}  # kind -> first row holding it ("" for no known file type)
        for row in self.rows:
            cell = self._cell(row, column)
            if cell is None:
                continue
            ext = _extension(cell)
            reader = self._reader(ext) if ext else None
            kind = reader.kind if reader is not None else ("audio" if ext in AUDIO_EXTENSIONS else "")
            found.setdefault(kind, row)
        if not found:
            raise DataError(f"{self._where()}: column {column!r} is empty in every row")
        if len(found) > 1:
            (k1, r1), (k2, r2) = sorted(found.items(), key=lambda kv: kv[1].number)[:2]
            what = {"": "no known file type"}
            raise DataError(
                f"{self._where()}: column {column!r} mixes {what.get(k1, k1 + ' files')} (row {r1.number}) "
                f"and {what.get(k2, k2 + ' files')} (row {r2.number}); give modalities: {{{column}: KIND}} "
                f"with KIND one of {list(KINDS)}"
            )
        kind = next(iter(found))
        return kind or "text"

    def _assign_splits(self) -> list[str]:
        if SPLIT_COLUMN in self.columns:
            if self.test_fraction is not None:
                raise DataError(f"{self._where()}: has a {SPLIT_COLUMN!r} column and test_fraction is set; give one")
            names = [self._cell(row, SPLIT_COLUMN) or "train" for row in self.rows]
            if "train" not in names:
                raise DataError(f"{self._where()}: no row has split 'train' (splits: {sorted(set(names))})")
            return names
        if self.test_fraction is None:
            return ["train"] * len(self.rows)
        n = len(self.rows)
        n_test = min(n - 1, max(1, round(self.test_fraction * n)))
        test = set(np.random.default_rng(self.seed).permutation(n)[:n_test].tolist())
        return ["test" if i in test else "train" for i in range(n)]

    # -- reading ---------------------------------------------------------------------------
    def _options(self, kind: str) -> dict[str, Any]:
        return {"image": self.image_options, "audio": self.audio_options}.get(kind, {})

    def _check_reader(self, ext: str, kind: str, reader: Any) -> None:
        """Refuse options a reader does not take before reading any file."""
        options = self._options(kind)
        name = {"image": "image_size/image_mode", "audio": "audio"}.get(kind, kind)
        try:
            inspect.signature(reader).bind("path", **options)
        except TypeError as exc:
            raise DataError(
                f"files dataset: {name} options {sorted(options)} do not suit the reader of .{ext} files: {exc}"
            ) from None
        validate = getattr(reader, "validate", None)
        if validate is not None:
            try:
                validate(**options)
            except (TypeError, ValueError) as exc:
                raise DataError(f"files dataset: {name}: {exc}") from None

    def _read_row(self, row: _Row, readers: dict[str, Any]) -> tuple[dict[str, np.ndarray], Skipped | None]:
        values: dict[str, np.ndarray] = {}
        for column, kind in self.kinds.items():
            cell = self._cell(row, column)
            if cell is None or kind == "text":
                continue
            path = Path(cell).expanduser()
            path = path if path.is_absolute() else self.root / path
            ext = _extension(cell)
            reader = readers.get(ext)

            reason, expected = None, EXPECTED[kind]
            if reader is None or reader.kind != kind:
                reason = f"no {kind} reader for '.{ext}' files" if ext else "no file extension"
            elif not path.is_file():
                reason = "file not found"
            else:
                try:
                    values[column] = np.asarray(reader(str(path), **self._options(kind)))
                except DataError:
                    raise
                except Exception as exc:  # noqa: BLE001  any decoding failure makes just this row unreadable
                    reason = f"unreadable ({type(exc).__name__}: {_first_line(exc)})"
                else:
                    bad = _count_nonfinite(values[column])
                    if bad:  # one NaN here would make every trained weight NaN
                        reason, expected = f"{bad} NaN or infinite values", "finite numbers"
            if reason is not None:
                return values, Skipped(row.number, row.line, column, str(path), f"{reason}; expected {expected}")
        return values, None

    def _readers(self) -> dict[str, Any]:
        readers: dict[str, Any] = {}
        for column, kind in self.kinds.items():
            if kind == "text":
                continue
            for row in self.rows:
                cell = self._cell(row, column)
                ext = _extension(cell) if cell else ""
                if not ext or ext in readers:
                    continue
                reader = self._reader(ext)
                if reader is None and ext in AUDIO_EXTENSIONS:
                    raise DataError(
                        f"{self._where(row)}, column {column!r}: no reader for .{ext} files: {AUDIO_PLUGIN_HINT}"
                    )
                if reader is not None and reader.kind == kind:
                    self._check_reader(ext, kind, reader)
                readers[ext] = reader
        return readers

    # -- labels ----------------------------------------------------------------------------
    def _resolve_label_kind(self, requested: str) -> str | None:
        """``requested``, with ``auto`` decided from the label cells (a mixed column is an error)."""
        if self.label is None:
            return None
        if requested != "auto":
            return requested
        first: dict[bool, tuple[_Row, str]] = {}  # is an integer -> its first row and cell
        for row in self.rows:
            cell = self._cell(row, self.label)
            if cell is not None:
                first.setdefault(bool(INTEGER.fullmatch(cell)), (row, cell))
                if len(first) == 2:
                    break
        if len(first) < 2:
            return "string" if False in first else "integer"
        (row, cell), (other, other_cell) = sorted(first.values(), key=lambda rc: rc[0].number, reverse=True)
        raise DataError(
            f"{self._where(row)}, column {self.label!r}: label {cell!r} is "
            f"{'not ' if INTEGER.fullmatch(other_cell) else ''}an integer, but row {other.number} "
            f"(line {other.line}) holds {other_cell!r}: the column mixes integer and non-integer labels. "
            "Set label_kind: string to read every label as a class name (sorted as text: '10' before '2'), "
            "or label_kind: integer to have each non-integer label reported (skipped under on_error: skip)"
        )

    def _label_problem(self, row: _Row) -> Skipped | None:
        if self.label is None:
            return None
        cell = self._cell(row, self.label)
        if cell is None:
            return Skipped(row.number, row.line, self.label, None, "empty label")
        if self.label_kind == "integer" and not INTEGER.fullmatch(cell):
            why = "label_kind: integer takes whole numbers such as 4 or -1, written without a decimal point"
            return Skipped(row.number, row.line, self.label, None, f"label {cell!r} is not an integer ({why})")
        if self.label_kind == "regression" and not _is_finite_number(cell):
            why = f"label {cell!r} is not a finite number (label_kind: regression)"
            return Skipped(row.number, row.line, self.label, None, why)
        return None

    def prepare(self, progress: bool = True) -> None:
        """Read every file once (in threads) and keep the arrays in memory."""
        if self._data is not None:
            return
        readers = self._readers()
        results: list[tuple[dict[str, np.ndarray], Skipped | None]] = []
        with _one_blas_thread(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for row, result in zip(self.rows, pool.map(lambda r: self._read_row(r, readers), self.rows)):
                values, problem = result
                problem = self._label_problems.get(row.number) or problem
                if problem is not None and self.on_error == "raise":
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise DataError(self._raise_message(problem))
                results.append((values, problem))
        self.skipped = [p for _, p in results if p is not None]
        if self.skipped:
            first = self.skipped[0]
            print(
                f"warning: files dataset {self.manifest}: skipped {len(self.skipped)} of {len(self.rows)} rows "
                f"(on_error: skip; listed in dataset.skipped); first: {first}",
                file=sys.stderr,
            )
        kept = [
            (row, split, values) for row, split, (values, p) in zip(self.rows, self.row_splits, results) if p is None
        ]
        if not kept:
            raise DataError(f"{self._where()}: every row was skipped; first: {self.skipped[0]}")
        self.backends = {
            column: self._backend(column, readers) for column, kind in self.kinds.items() if kind != "text"
        }
        self._data = self._assemble(kept)

    def _backend(self, column: str, readers: dict[str, Any]) -> str:
        """What decoded ``column`` (the readers' ``backend`` names, after reading)."""
        extensions = {_extension(cell) for row in self.rows if (cell := self._cell(row, column))}
        return ", ".join(sorted({str(getattr(readers[e], "backend", "?")) for e in extensions if readers.get(e)}))

    def _raise_message(self, problem: Skipped) -> str:
        what = f" {problem.path}:" if problem.path else ""
        return (
            f"{self._where()}: row {problem.row} (line {problem.line}), column {problem.column!r}:{what} "
            f"{problem.reason}. Fix or remove the row, or set on_error: skip"
        )

    # -- assembling ------------------------------------------------------------------------
    def _assemble(self, kept: list[tuple[_Row, str, dict[str, np.ndarray]]]) -> dict[str, DataSplit]:
        shapes = self._shapes(kept)
        labels = self._labels([row for row, _, _ in kept])
        token_ids = self._tokenize(kept)
        data = {}
        for split in self.splits:
            idx = [i for i, (_, s, _) in enumerate(kept) if s == split]
            if not idx:
                raise DataError(f"{self._where()}: every row of split {split!r} was skipped")
            inputs, masks = {}, {}
            for column, kind in self.kinds.items():
                if kind == "text":
                    inputs[column] = token_ids[column][idx]
                    masks[column] = (inputs[column][:, 0] != 0).astype(np.float32)
                    continue
                stacked = np.zeros((len(idx), *shapes[column]), dtype=np.float32)
                present = np.zeros(len(idx), dtype=np.float32)
                for j, i in enumerate(idx):
                    if column in kept[i][2]:
                        stacked[j] = kept[i][2][column]
                        present[j] = 1.0
                inputs[column], masks[column] = stacked, present
            data[split] = DataSplit(inputs, None if labels is None else labels[idx], masks)
        return data

    def _shapes(self, kept: list[tuple[_Row, str, dict[str, np.ndarray]]]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[tuple[int, ...], _Row]] = {}
        hints = {"image": "; set image_size to resize every image", "audio": "; set audio.seconds"}
        for row, _, values in kept:
            for column, array in values.items():
                if column not in shapes:
                    shapes[column] = (array.shape, row)
                elif array.shape != shapes[column][0]:
                    shape, first = shapes[column]
                    raise DataError(
                        f"{self._where(row)}, column {column!r}: {self._cell(row, column)} has shape {array.shape}, "
                        f"but row {first.number} has {shape}; every row must match{hints.get(self.kinds[column], '')}"
                    )
        for column, kind in self.kinds.items():
            if kind != "text" and column not in shapes:
                raise DataError(f"{self._where()}: column {column!r} has no readable file in any kept row")
        return {column: shape for column, (shape, _) in shapes.items()}

    def _labels(self, rows: list[_Row]) -> np.ndarray | None:
        """The labels of the kept ``rows`` (each already checked against :attr:`label_kind`)."""
        if self.label is None:
            return None
        cells = [self._cell(row, self.label) for row in rows]
        if self.label_kind == "integer":
            return np.array([int(c) for c in cells], dtype=np.int64)
        if self.label_kind == "regression":
            return np.array([float(c) for c in cells], dtype=np.float32)
        # the mapping is fixed by every label of the manifest, so it is the same for each split
        self.label_names = sorted({c for row in self.rows if (c := self._cell(row, self.label)) is not None})
        index = {name: i for i, name in enumerate(self.label_names)}
        return np.array([index[c] for c in cells], dtype=np.int64)

    def label_info(self) -> str | None:
        return {
            "integer": f"int64 class ids (column {self.label!r}, integers)",
            "string": f"int64 class ids (column {self.label!r}, class names in sorted order: label_names)",
            "regression": f"float32 regression targets (column {self.label!r})",
        }.get(self.label_kind)

    def info(self) -> dict[str, ModalityInfo] | None:
        """Each modality column's shape, from the options (image size and mode, the audio reader's
        ``shape``, text length) or a ``.npy`` header; None if a column's rank cannot be told
        without reading its files (a reader without ``shape``)."""
        out = {}
        for column, kind in self.kinds.items():
            if kind == "text":
                level = self.text_options["level"]
                out[column] = ModalityInfo(
                    (self.text_options["max_tokens"],), "int32", f"token ids ({level} level) of column {column!r}"
                )
                continue
            shape = self._column_shape(column, kind)
            if shape is None:
                return None
            out[column] = ModalityInfo(shape, "float32", f"{kind} files of column {column!r}")
        return out

    def _column_shape(self, column: str, kind: str) -> tuple[int | None, ...] | None:
        cells = (cell for row in self.rows if (cell := self._cell(row, column)) is not None)
        for cell in cells:
            reader = self._reader(_extension(cell))
            if reader is None or reader.kind != kind:
                continue
            if isinstance(reader, NpyReader):
                path = Path(cell).expanduser()
                try:
                    return tuple(reader.header_shape(str(path if path.is_absolute() else self.root / path)))
                except (OSError, ValueError):
                    continue  # a missing or broken file: its row fails at load; the next may tell
            try:
                declared = reader.shape(**self._options(kind)) if hasattr(reader, "shape") else None
            except (TypeError, ValueError):
                return None
            return tuple(declared) if declared is not None else None
        return None

    @property
    def label_mapping(self) -> dict[str, int] | None:
        """String label -> id (None for integer and regression labels)."""
        return None if self.label_names is None else {n: i for i, n in enumerate(self.label_names)}

    def _tokens(self, text: str) -> list[str]:
        text = text.lower()
        return text.split() if self.text_options["level"] == "word" else [c for c in text if not c.isspace()]

    def _tokenize(self, kept: list[tuple[_Row, str, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
        """Token ids ``[N, max_tokens]`` int32 per text column; vocabulary from the kept train rows."""
        out = {}
        size, length = self.text_options["vocab_size"], self.text_options["max_tokens"]
        for column in (c for c, k in self.kinds.items() if k == "text"):
            counts = Counter(
                token
                for row, split, _ in kept
                if split == "train"
                for token in self._tokens(self._cell(row, column) or "")
            )
            frequent = sorted(counts, key=lambda t: (-counts[t], t))[: size - 2]
            self.vocabulary[column] = [PAD, UNKNOWN, *frequent]
            index = {t: i for i, t in enumerate(self.vocabulary[column])}
            ids = np.zeros((len(kept), length), dtype=np.int32)
            for i, (row, _, _) in enumerate(kept):
                tokens = self._tokens(self._cell(row, column) or "")[:length]
                ids[i, : len(tokens)] = [index.get(t, 1) for t in tokens]
            out[column] = ids
        return out

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        self.prepare(progress=False)
        return self._data[split]

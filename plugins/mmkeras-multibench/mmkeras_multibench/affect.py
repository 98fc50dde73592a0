"""The ``affect`` dataset: MultiBench's affective-computing pickles, read as published.

Four corpora of short video segments, each described by three aligned feature sequences:
CMU-MOSI and CMU-MOSEI (sentiment), UR-FUNNY ("humor": is the next utterance a punchline?) and
MUsTARD ("sarcasm": is the utterance sarcastic?).

File format (the processed pickles MultiBench distributes; GMC uses the same layout for MOSI):
a pickled dict ``{"train": S, "valid": S, "test": S}``, each ``S`` a dict of numpy arrays

- ``text``: float [N, T, 300], GloVe vectors of the words, one step per word;
- ``audio``: float [N, T, A], COVAREP acoustic features averaged over each word (may hold ``-inf``);
- ``vision``: float [N, T, V], Facet facial features averaged over each word;
- ``labels``: float [N, 1, 1] (some files: [N, 1] or [N]): sentiment in [-3, 3] for MOSI and MOSEI
  (the annotators' mean, on a 1/3 grid with exact zeros), 0/1 for humor and sarcasm;
- ``id`` (optional): the segment's identifier (or a row of identifiers) per row.

T is 50 in the published files; shorter segments are padded with all-zero steps AT THE FRONT.
Usual widths (A, V), by file: MOSI as GMC uses it (``mosi_data.pkl``) 5, 20; MOSEI
(``mosei_senti_data.pkl``) 74, 35; UR-FUNNY (``humor.pkl``) and MUsTARD (``sarcasm.pkl``) 81, 371;
MultiBench's ``mosi_raw.pkl`` 74, 35 (set ``audio_dim``/``vision_dim`` for such versions).

Without a ``path`` the dataset writes (once) and reads a synthetic stand-in in exactly this layout,
made by :func:`write_standin` with a known amount of redundant, unique and synergistic information
per modality, so recipes run anywhere. Nothing is downloaded.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, Strict

from mmkeras.plugin import DataError, Dataset, DataSplit, ModalityInfo, PositiveInt, Seed, atomic_write
from mmkeras_multibench._common import array, key, read_pickle, standin_dir

CORPORA: tuple[str, ...] = ("mosi", "mosei", "humor", "sarcasm")
TARGETS: tuple[str, ...] = ("auto", "regression", "binary", "seven_class")
#: corpus -> (audio width, vision width) of its usual published file
WIDTHS: dict[str, tuple[int, int]] = {"mosi": (5, 20), "mosei": (74, 35), "humor": (81, 371), "sarcasm": (81, 371)}
#: corpus -> the published file's usual name (for messages)
FILE_NAMES: dict[str, str] = {
    "mosi": "mosi_data.pkl",
    "mosei": "mosei_senti_data.pkl",
    "humor": "humor.pkl",
    "sarcasm": "sarcasm.pkl",
}
TEXT_DIM = 300
MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
#: our split name -> the file's key
SPLIT_KEYS: dict[str, str] = {"train": "train", "validation": "valid", "test": "test"}
SENTIMENT = ("mosi", "mosei")

#: the stand-in's weights in ``sentiment = clip(round3(a*r + b*u_text + c*u_audio + c*u_vision
#: + d*(2*XOR - 1) + noise*e), -3, 3)``
STANDIN_WEIGHTS: dict[str, float] = {"a": 0.9, "b": 0.6, "c": 0.6, "d": 0.7, "noise": 0.1}
STANDIN_STEP_NOISE = 0.5  #: std of the uniform per-step, per-feature noise added to each modality's steps
STANDIN_MIN_STEPS = 10  #: the shortest stand-in segment (steps); the longest is ``seq_len``


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"affect: {name} must be an int >= {low}, got {value!r}")


class Affect(Dataset):
    """CMU-MOSI, CMU-MOSEI, UR-FUNNY or MUsTARD from MultiBench's pickle (see the module docstring).

    Yields ``text`` [N, seq_len, 300], ``audio`` [N, seq_len, A] and ``vision`` [N, seq_len, V]
    float32 sequences, padded with all-zero steps at the front, and the labels of ``target``.
    Splits ``train``, ``validation`` and ``test`` are the file's ``train``, ``valid`` and ``test``.

    Cleaning, in this order, per split:

    1. each modality keeps its last ``seq_len`` steps (the data are front-padded), or is
       front-padded with zero steps to ``seq_len``;
    2. rows with NaN in any modality are dropped and listed in :attr:`skipped`;
    3. ``-inf`` and ``+inf`` (COVAREP's log features of silence) become 0;
    4. padding is aligned: the text defines where a segment starts, so steps before the text's first
       non-zero step are zeroed in every modality (a row whose text is all zero is left as it is);
    5. labels per ``target``: ``regression`` float32 sentiment; ``binary`` int64 ``label > 0``
       (with ``drop_neutral``, rows whose label is exactly 0 are dropped first); ``seven_class``
       int64 ``round(clip(label, -3, 3)) + 3`` (numpy's round: halves to even).

    Bad files raise :class:`DataError` naming the file and the key path: not a dict, a missing split
    or modality, a wrong rank or width, row counts that differ within a split, labels of another
    shape, non-finite labels, regression labels outside [-3, 3].

    Args:
        corpus: "mosi", "mosei", "humor" (UR-FUNNY) or "sarcasm" (MUsTARD).
        path: the pickle; None: a synthetic stand-in in the same layout, written once under data_dir.
        target: "auto" (regression for mosi/mosei, binary for humor/sarcasm), "regression",
            "binary" or "seven_class" (the last two sentiment classes only for mosi/mosei).
        drop_neutral: with a binary sentiment target, drop rows whose label is exactly 0.
        seq_len: steps per sequence: the last seq_len of each row, front-padded with zeros if shorter.
        audio_dim: audio features per step; None: the corpus's usual width (mosi 5, mosei 74, humor and
            sarcasm 81; MultiBench's mosi_raw.pkl: 74).
        vision_dim: vision features per step; None: the corpus's usual width (mosi 20, mosei 35, humor
            and sarcasm 371; MultiBench's mosi_raw.pkl: 35).
        data_dir: root of the stand-in files (default mmkeras's data dir); they go in
            <data_dir>/multibench_standin/.
        seed: the stand-in's seed.
        standin_rows: the stand-in's train rows (validation: a quarter of them, test: half).
    """

    splits = ("train", "validation", "test")
    files_from = (
        "the processed pickles MultiBench distributes (`mosi_raw.pkl`, `mosei_raw.pkl`, `humor.pkl` for UR-FUNNY, "
        "`sarcasm.pkl` for MUsTARD; links in MultiBench's README, some of them broken today, MultiBench issue #35) "
        "and the word-aligned `mosi_data.pkl` / `mosei_senti_data.pkl` that GMC's supervised experiments read. "
        "Give the file as `data.params.path` (with `corpus`; `audio_dim: 74, vision_dim: 35` for `mosi_raw.pkl`). "
        "Without `path`: synthetic stand-in files in the same layout."
    )

    def __init__(
        self,
        corpus: Literal["mosi", "mosei", "humor", "sarcasm"] = "mosei",
        path: str | None = None,
        target: Literal["auto", "regression", "binary", "seven_class"] = "auto",
        drop_neutral: bool = False,
        seq_len: PositiveInt = 50,
        audio_dim: PositiveInt | None = None,
        vision_dim: PositiveInt | None = None,
        data_dir: str | None = None,
        seed: Seed = 0,
        standin_rows: Annotated[int, Strict(), Field(ge=4)] = 1024,
    ) -> None:
        if corpus not in CORPORA:
            raise ValueError(f"affect: corpus must be one of {list(CORPORA)}, got {corpus!r}")
        if target not in TARGETS:
            raise ValueError(f"affect: target must be one of {list(TARGETS)}, got {target!r}")
        _check_int("seq_len", seq_len, 1)
        _check_int("seed", seed, 0)
        _check_int("standin_rows", standin_rows, 4)
        for name, value in (("audio_dim", audio_dim), ("vision_dim", vision_dim)):
            if value is not None:
                _check_int(name, value, 1)
        task = target if target != "auto" else ("regression" if corpus in SENTIMENT else "binary")
        if corpus not in SENTIMENT and task != "binary":
            raise ValueError(f"affect: {corpus} has 0/1 labels, so target must be 'auto' or 'binary', got {target!r}")
        if drop_neutral and (task != "binary" or corpus not in SENTIMENT):
            raise ValueError(
                "affect: drop_neutral drops sentiment 0 for a binary target, so it needs corpus mosi or mosei "
                f"and target 'binary' (got corpus {corpus!r}, target {target!r})"
            )
        self.corpus = corpus
        self.path = path
        self.target = target
        self.task = task
        self.drop_neutral = drop_neutral
        self.seq_len = seq_len
        usual_audio, usual_vision = WIDTHS[corpus]
        self.widths = {
            "text": TEXT_DIM,
            "audio": audio_dim if audio_dim is not None else usual_audio,
            "vision": vision_dim if vision_dim is not None else usual_vision,
        }
        self.audio_dim, self.vision_dim = audio_dim, vision_dim
        self.data_dir = data_dir
        self.seed = seed
        self.standin_rows = standin_rows
        self._data: dict[str, DataSplit] | None = None
        self._skipped: list[str] = []

    @property
    def file(self) -> Path:
        """The pickle read: ``path``, or the stand-in file for these parameters."""
        if self.path is not None:
            return Path(self.path).expanduser()
        name = self.corpus
        if (self.seed, self.standin_rows, self.audio_dim, self.vision_dim) != (0, 1024, None, None):
            # parameters that change the stand-in's content get a file of their own
            name += f"-seed{self.seed}-rows{self.standin_rows}-a{self.widths['audio']}-v{self.widths['vision']}"
        return standin_dir(self.data_dir) / f"{name}.pkl"

    @property
    def skipped(self) -> list[str]:
        """One line per row dropped for NaN ("FILE: split 'train', row 12 (id ...): NaN in audio")."""
        return list(self._skipped)

    def prepare(self, progress: bool = True) -> None:
        """Check that ``path`` exists; without one, write the stand-in file unless it is there."""
        file = self.file
        if self.path is not None:
            if not file.is_file():
                raise DataError(f"{file}: no such file (data.params.path of the affect dataset)")
            return
        if file.is_file():
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        write_standin(file, self.corpus, self.seed, self.standin_rows, 50, self.widths["audio"], self.widths["vision"])
        print(
            f"affect: wrote {file}: SYNTHETIC stand-in data for {self.corpus} in the published layout of "
            f"{FILE_NAMES[self.corpus]}; set data.params.path to read the real file"
        )

    def info(self) -> dict[str, ModalityInfo]:
        t, pad = self.seq_len, "; padding steps (at the front) are all zero"
        return {
            "text": ModalityInfo((t, TEXT_DIM), "float32", f"GloVe vectors of the words, one step per word{pad}"),
            "audio": ModalityInfo(
                (t, self.widths["audio"]), "float32", f"COVAREP acoustic features per word (-inf set to 0){pad}"
            ),
            "vision": ModalityInfo((t, self.widths["vision"]), "float32", f"Facet facial features per word{pad}"),
        }

    def label_info(self) -> str:
        if self.task == "regression":
            return "float32 sentiment in [-3, 3]"
        if self.task == "seven_class":
            return "int64 sentiment class 0-6 (round(clip(sentiment, -3, 3)) + 3)"
        if self.corpus == "humor":
            return "int64 punchline 0/1"
        if self.corpus == "sarcasm":
            return "int64 sarcastic 0/1"
        return "int64 sentiment > 0 (1) vs < 0 (0)" if self.drop_neutral else "int64 sentiment > 0 (1) vs <= 0 (0)"

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        if self._data is None:
            self.prepare(progress=False)
            self._data = self._read()
        return self._data[split]

    def _read(self) -> dict[str, DataSplit]:
        """Every split, checked and cleaned: a bad file fails on its first read, whatever split was asked."""
        file = self.file
        raw = read_pickle(file)
        if not isinstance(raw, dict):
            raise DataError(
                f"{file}: expected a dict with keys 'train', 'valid', 'test' at the top level, "
                f"found {type(raw).__name__}"
            )
        self._skipped = []
        return {split: self._split(raw, file, name) for split, name in SPLIT_KEYS.items()}

    def _split(self, raw: dict, file: Path, name: str) -> DataSplit:
        part = key(raw, name, file)
        where = f"[{name!r}]"
        seqs: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            at = f"{where}[{m!r}]"
            a = array(key(part, m, file, where), file, at, (None, None, None))
            if a.shape[2] != self.widths[m]:
                hint = (
                    "text must be 300-d GloVe vectors"
                    if m == "text"
                    else f"if this file is another version, set data.params.{m}_dim: {a.shape[2]}"
                )
                raise DataError(
                    f"{file}: {at} has width {a.shape[2]} (shape {list(a.shape)}); expected {self.widths[m]} "
                    f"for {self.corpus}; {hint}"
                )
            seqs[m] = a
        at = f"{where}['labels']"
        labels = array(key(part, "labels", file, where), file, at)
        if not (1 <= labels.ndim <= 3 and all(d == 1 for d in labels.shape[1:])):
            raise DataError(f"{file}: {at} has shape {list(labels.shape)}; expected [N, 1, 1], [N, 1] or [N]")
        ids = np.asarray(part["id"]) if "id" in part else None
        rows = {f"{where}[{m!r}]": len(a) for m, a in seqs.items()}
        rows[at] = len(labels)
        if ids is not None:
            rows[f"{where}['id']"] = len(ids) if ids.ndim else 0
        first = next(iter(rows))
        for k, n in rows.items():
            if n != rows[first]:
                raise DataError(
                    f"{file}: {k} has {n} rows but {first} has {rows[first]}; each key of a split has a row per segment"
                )
        y = labels.reshape(len(labels)).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DataError(
                f"{file}: {at} row {bad[0]} is {y[bad[0]]}; labels must be finite ({len(bad)} rows are not)"
            )
        if self.task == "regression":
            out = np.flatnonzero(np.abs(y) > 3)
            if len(out):
                raise DataError(
                    f"{file}: {at} row {out[0]} is {y[out[0]]}, outside [-3, 3]; regression reads sentiment "
                    f"in [-3, 3] ({len(out)} rows are outside)"
                )

        seqs = {m: _last_steps(a, self.seq_len) for m, a in seqs.items()}
        nan = {m: np.isnan(a).any(axis=(1, 2)) for m, a in seqs.items()}
        dropped = np.logical_or.reduce(list(nan.values()))
        for i in np.flatnonzero(dropped):
            which = ", ".join(m for m in MODALITIES if nan[m][i])
            self._skipped.append(f"{file}: split {name!r}, row {i}{_id_text(ids, i)}: NaN in {which}")
        keep = ~dropped
        if self.drop_neutral:
            keep &= y != 0  # the binary protocol leaves neutral segments out
        if not keep.all():
            seqs = {m: np.take(a, np.flatnonzero(keep), axis=0) for m, a in seqs.items()}
            y = y[keep]
        for a in seqs.values():
            np.copyto(a, 0.0, where=np.isinf(a))
        started = (seqs["text"] != 0).any(axis=2)
        before = np.arange(self.seq_len)[None, :] < started.argmax(axis=1)[:, None]
        before &= started.any(axis=1)[:, None]  # an all-zero text defines no start: leave that row
        for a in seqs.values():
            a[before] = 0.0
        return DataSplit(seqs, self._labels(y))

    def _labels(self, y: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return y.astype(np.float32)
        if self.task == "binary":
            return (y > 0).astype(np.int64)
        return np.round(np.clip(y, -3, 3)).astype(np.int64) + 3


def _last_steps(a: np.ndarray, seq_len: int) -> np.ndarray:
    """The last ``seq_len`` steps of ``a`` [N, T, d] as a new float32 array, front-padded with zeros."""
    steps = a.shape[1]
    if steps >= seq_len:
        return a[:, steps - seq_len :].astype(np.float32)  # astype copies: the file's arrays stay as read
    out = np.zeros((a.shape[0], seq_len, a.shape[2]), np.float32)
    out[:, seq_len - steps :] = a
    return out


def _id_text(ids: np.ndarray | None, i: int) -> str:
    if ids is None:
        return ""
    parts = np.atleast_1d(ids[i]).ravel()
    text = " ".join(p.decode("latin1") if isinstance(p, bytes) else str(p) for p in parts)
    return f" (id {text})"


def write_standin(
    path: str | Path,
    corpus: str,
    seed: int = 0,
    rows: int = 1024,
    seq_len: int = 50,
    audio_dim: int | None = None,
    vision_dim: int | None = None,
) -> Path:
    """Write a synthetic ``corpus`` pickle in exactly the published layout (see the module docstring)
    to ``path`` and return it: ``rows`` train, ``rows // 4`` valid and ``rows // 2`` test segments.

    Arrays are float32, ``labels`` [N, 1, 1] and ``id`` a numpy array of str. The real files' quirks are
    kept: segments of 10..seq_len steps (uniform), front-padded with all-zero steps in every modality;
    a ``-inf`` in the audio of about 2% of the rows; sentiment on a 1/3 grid with exact zeros.

    What each modality knows, per row: standard normal factors ``r`` (shared by all three: redundant),
    ``u_text``, ``u_audio``, ``u_vision`` (each in one modality: unique) and fair bits ``b_audio``,
    ``b_vision`` (synergistic: only their XOR matters). With ``s(b) = 2b - 1`` and ``e`` standard normal,

        z = a*r + b*u_text + c*u_audio + c*u_vision + d*s(b_audio XOR b_vision) + noise*e,
        a = 0.9, b = c = 0.6, d = 0.7, noise = 0.1
        sentiment = clip(round(3 z) / 3, -3, 3)      (mosi, mosei)
        label = 1 if z > 0 else 0                    (humor, sarcasm)

    Every step of a segment is its modality's factors times fixed random directions (standard normal,
    seeded by the corpus, not by ``seed``) plus noise per feature (uniform, std 0.5):

        text = r*D_tr + u_text*D_tu,  audio = r*D_ar + u_audio*D_au + s(b_audio)*D_ab,
        vision = r*D_vr + u_vision*D_vu + s(b_vision)*D_vb.

    So text alone explains about (a^2 + b^2) / Var z of the sentiment linearly, all three together
    (a^2 + b^2 + 2c^2) / Var z, and the XOR term (d^2 / Var z, about a fifth) only a non-linear fusion
    of audio and vision. The same arguments give the same bytes.
    """
    if corpus not in CORPORA:
        raise ValueError(f"write_standin: corpus must be one of {list(CORPORA)}, got {corpus!r}")
    _check_int("rows", rows, 4)
    _check_int("seq_len", seq_len, 1)
    widths = {
        "text": TEXT_DIM,
        "audio": audio_dim if audio_dim is not None else WIDTHS[corpus][0],
        "vision": vision_dim if vision_dim is not None else WIDTHS[corpus][1],
    }
    corpus_seed = zlib.crc32(corpus.encode())
    fixed = np.random.default_rng([corpus_seed, 0])
    directions = {
        "text": fixed.standard_normal((2, widths["text"])).astype(np.float32),
        "audio": fixed.standard_normal((3, widths["audio"])).astype(np.float32),
        "vision": fixed.standard_normal((3, widths["vision"])).astype(np.float32),
    }
    data = {
        name: _standin_split(np.random.default_rng([seed, corpus_seed, j + 1]), corpus, name, n, seq_len, directions)
        for j, (name, n) in enumerate((("train", rows), ("valid", rows // 4), ("test", rows // 2)))
    }
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=4)

    atomic_write(path, write)
    return path


def _standin_split(
    rng: np.random.Generator, corpus: str, name: str, n: int, seq_len: int, directions: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    w = STANDIN_WEIGHTS
    r, u_text, u_audio, u_vision = rng.standard_normal((4, n))
    b_audio, b_vision = rng.integers(0, 2, (2, n))
    z = (
        w["a"] * r
        + w["b"] * u_text
        + w["c"] * (u_audio + u_vision)
        + w["d"] * (2.0 * (b_audio ^ b_vision) - 1.0)
        + w["noise"] * rng.standard_normal(n)
    )
    if corpus in SENTIMENT:
        labels = np.clip(np.round(3.0 * z) / 3.0, -3.0, 3.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    else:
        labels = (z > 0).astype(np.float64)
    lengths = rng.integers(min(STANDIN_MIN_STEPS, seq_len), seq_len + 1, n)
    present = (np.arange(seq_len)[None, :] >= (seq_len - lengths)[:, None]).astype(np.float32)[:, :, None]
    factors = {
        "text": np.stack([r, u_text], 1),
        "audio": np.stack([r, u_audio, 2.0 * b_audio - 1.0], 1),
        "vision": np.stack([r, u_vision, 2.0 * b_vision - 1.0], 1),
    }
    out: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        mean = (factors[m].astype(np.float32) @ directions[m])[:, None, :]
        # uniform noise of the same std: a third of the cost of normal draws, and these files are large
        noise = rng.random((n, seq_len, directions[m].shape[1]), dtype=np.float32) - np.float32(0.5)
        out[m] = (mean + np.float32(STANDIN_STEP_NOISE * 12**0.5) * noise) * present
    hit = np.flatnonzero(rng.random(n) < 0.02)  # silence in COVAREP's log features reads as -inf
    steps = seq_len - 1 - rng.integers(0, lengths[hit])
    out["audio"][hit, steps, rng.integers(0, out["audio"].shape[2], len(hit))] = -np.inf
    out["labels"] = labels.astype(np.float32).reshape(n, 1, 1)
    out["id"] = np.array([f"{corpus}_{name}_{i:05d}" for i in range(n)])
    return out

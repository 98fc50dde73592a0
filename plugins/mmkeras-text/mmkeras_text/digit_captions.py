"""The ``digit_captions`` dataset: short English captions of a digit, paired with a noisy vector code.

Made from templates in a few milliseconds; nothing is downloaded or cached.
"""

from __future__ import annotations

import functools

import numpy as np

from mmkeras.plugin import Dataset, DataSplit, ModalityInfo
from mmkeras_text.tokenizer import WordTokenizer

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: ``{d}`` is the digit (as a word or a numeral), ``{adj}`` a synonym of "handwritten"
TEMPLATES = (
    "a {adj} {d}",
    "the number {d} drawn in ink",
    "{d}, written by hand",
    "a picture of the digit {d}",
    "someone wrote a {d} here",
    "this is a {adj} {d}.",
    "the digit {d}, {adj}",
    "an image showing the number {d}",
)
ADJECTIVES = ("handwritten", "hand-drawn", "scribbled", "pencilled", "sketched")
SPLITS = ("train", "test")

# stream keys of the seeded SeedSequences (spawn_key=(stream, ...))
_STREAM_CODES, _STREAM_ROWS = 0, 1


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"digit_captions: {name} must be an int >= {minimum}, got {value!r}")
    return value


class DigitCaptions(Dataset):
    """Pairs of a caption (``text``) and a vector code (``vector``) of the same digit; labels = the digit.

    Each row draws a digit ``y`` uniformly from 0-9, then:

    - ``text``: int32 token ids ``[N, length]`` of a caption from one of 8 templates
      ("a handwritten seven", "the number 7 drawn in ink", "seven, written by hand", ...) with the
      digit as a word or a numeral (probability 1/2 each) and a synonym of "handwritten";
    - ``vector``: float32 ``[N, vector_dim]``, ``C[y] + noise * e`` with a seeded random code
      ``C`` (10 x ``vector_dim``, entries N(0, 1)) and ``e ~ N(0, I)``.

    The tokenizer is fitted on the training captions only (``min_count``, at most ``max_vocab``
    ids) and kept as ``dataset.tokenizer``; test captions are encoded with it, so a word unseen in
    training becomes id 1. ``dataset.vocab_size`` is its size and never exceeds ``max_vocab``: a
    recipe that sets the encoder's ``vocab_size: <max_vocab>`` is always large enough.
    ``captions(split)`` gives the raw strings.

    Every random choice has its own seeded stream (the codes; each split's rows), so a split is the
    same whatever else was loaded.

    Parameters:
        num_train, num_test: rows per split.
        seed: one seed for everything.
        length: token ids per caption (captions are at most 8 tokens; shorter ones are padded with 0).
        vector_dim: size of the vector code.
        noise: standard deviation of the vector's noise.
        min_count: a word enters the vocabulary if seen this often in the training captions.
        max_vocab: the vocabulary's size cap, ids 0 and 1 included.
    """

    splits = SPLITS

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        seed: int = 0,
        length: int = 12,
        vector_dim: int = 16,
        noise: float = 1.0,
        min_count: int = 1,
        max_vocab: int = 64,
    ) -> None:
        self.sizes = {
            "train": _positive_int("num_train", num_train),
            "test": _positive_int("num_test", num_test),
        }
        self.seed = _positive_int("seed", seed, 0)
        self.length = _positive_int("length", length)
        self.vector_dim = _positive_int("vector_dim", vector_dim)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
            raise ValueError(f"digit_captions: noise must be a number >= 0, got {noise!r}")
        self.noise = float(noise)
        self.min_count = _positive_int("min_count", min_count)
        self.max_vocab = _positive_int("max_vocab", max_vocab, 2)
        self.codes = _rng(self.seed, _STREAM_CODES).normal(size=(10, self.vector_dim)).astype(np.float32)

    # drawn on first use, so constructing the dataset (``mmkeras validate``) costs nothing
    @functools.cached_property
    def _rows(self) -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
        return {split: self._draw(split) for split in SPLITS}

    @functools.cached_property
    def tokenizer(self) -> WordTokenizer:
        """The word tokenizer fitted on the training captions."""
        return WordTokenizer.fit(self._rows["train"][1], min_count=self.min_count, max_size=self.max_vocab)

    def info(self) -> dict[str, ModalityInfo]:
        return {
            "text": ModalityInfo((self.length,), "int32", "token ids of an English caption of the digit, 0-padded"),
            "vector": ModalityInfo((self.vector_dim,), "float32", "the digit's random code plus Gaussian noise"),
        }

    def label_info(self) -> str:
        return "int64 digit 0-9"

    @property
    def vocab_size(self) -> int:
        """Ids of the training vocabulary, 0 (padding) and 1 (unknown) included."""
        return self.tokenizer.vocab_size

    def _draw(self, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        n = self.sizes[split]
        rng = _rng(self.seed, _STREAM_ROWS, SPLITS.index(split))
        digits = rng.integers(0, 10, size=n)
        template = rng.integers(0, len(TEMPLATES), size=n)
        as_word = rng.random(n) < 0.5
        adjective = rng.integers(0, len(ADJECTIVES), size=n)
        captions = [
            TEMPLATES[t].format(d=WORDS[y] if w else str(y), adj=ADJECTIVES[a])
            for y, t, w, a in zip(digits, template, as_word, adjective)
        ]
        vectors = self.codes[digits] + self.noise * rng.normal(size=(n, self.vector_dim)).astype(np.float32)
        return digits.astype(np.int64), captions, vectors.astype(np.float32)

    def captions(self, split: str) -> list[str]:
        """The raw captions of ``split``."""
        self._check_split(split)
        return list(self._rows[split][1])

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        digits, captions, vectors = self._rows[split]
        text = self.tokenizer.encode(captions, self.length)
        return DataSplit({"text": text, "vector": vectors.copy()}, digits.copy())

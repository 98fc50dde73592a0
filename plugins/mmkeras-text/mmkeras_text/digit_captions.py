"""The ``digit_captions`` dataset: short English captions of a digit, paired with a noisy vector code
and, optionally, an image of the digit.

Made from templates (and, for images, matplotlib's bundled DejaVu Sans font) in a few milliseconds
per thousand rows; nothing is downloaded or cached.
"""

from __future__ import annotations

import functools
import os

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
_STREAM_CODES, _STREAM_ROWS, _STREAM_IMAGES = 0, 1, 2

#: the random pose of a drawn digit: glyph height as a fraction of the image side, rotation in
#: degrees, shift of its centre as a fraction of the side (each axis), stroke width in pixels at 28x28
GLYPH_HEIGHT = (0.45, 0.75)
ROTATION = (-20.0, 20.0)
SHIFT = (-0.1, 0.1)
STROKE = (0.5, 2.5)
MIN_IMAGE_SIZE = 8


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@functools.cache
def _glyphs() -> tuple[list, np.ndarray, np.ndarray]:
    """The outlines of the numerals 0-9 in matplotlib's bundled DejaVu Sans (the same on every
    machine, whatever fonts are installed), with each one's bounding-box centre and height."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    font = FontProperties(fname=os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"))
    paths = [TextPath((0, 0), str(d), size=1.0, prop=font) for d in range(10)]
    boxes = [p.get_extents() for p in paths]  # slow (Bezier extrema): once per process
    centres = np.array([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in boxes])
    heights = np.array([b.y1 - b.y0 for b in boxes])
    return paths, centres, heights


def render_digits(digits: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw each digit as a white numeral on black: float32 ``[N, size, size, 1]`` in [0, 1].

    With ``rng``, each numeral gets a random height, rotation, shift and stroke width (uniform in
    ``GLYPH_HEIGHT``, ``ROTATION``, ``SHIFT``, ``STROKE``, four draws per row in that order);
    without, every numeral is drawn upright, centred, 0.6 of the side high, stroke 1.5 px (at 28).
    Rasterised with antialiasing by matplotlib's Agg renderer; the stroke widens the glyph's
    outline, so a wide stroke is a bold digit.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.transforms import Affine2D

    digits = np.asarray(digits, dtype=np.int64)
    n = len(digits)
    if rng is None:
        height = np.full(n, 0.6)
        angle, shift, stroke = np.zeros(n), np.zeros((n, 2)), np.full(n, 1.5)
    else:
        height = rng.uniform(*GLYPH_HEIGHT, size=n)
        angle = rng.uniform(*ROTATION, size=n)
        shift = rng.uniform(*SHIFT, size=(n, 2))
        stroke = rng.uniform(*STROKE, size=n)
    paths, centres, heights = _glyphs()
    # at 72 dpi one point is one pixel, so line widths are in pixels
    renderer = RendererAgg(size, size, 72)
    gc = renderer.new_gc()
    gc.set_foreground((1.0, 1.0, 1.0))
    gc.set_antialiased(True)
    images = np.empty((n, size, size, 1), dtype=np.float32)
    for i, d in enumerate(digits):
        pose = (
            Affine2D()
            .translate(*-centres[d])
            .scale(height[i] * size / heights[d])
            .rotate_deg(angle[i])
            .translate(size * (0.5 + shift[i, 0]), size * (0.5 + shift[i, 1]))
        )
        renderer.clear()
        gc.set_linewidth(stroke[i] * size / 28)
        renderer.draw_path(gc, paths[d], pose, (1.0, 1.0, 1.0))
        # the alpha channel is the coverage of an antialiased white shape on a transparent canvas
        images[i, :, :, 0] = np.asarray(renderer.buffer_rgba())[:, :, 3] / np.float32(255)
    gc.restore()
    return images


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"digit_captions: {name} must be an int >= {minimum}, got {value!r}")
    return value


class DigitCaptions(Dataset):
    """Pairs of a caption (``text``) and a vector code (``vector``) of the same digit, and optionally
    its image (``image``); labels = the digit.

    Each row draws a digit ``y`` uniformly from 0-9, then:

    - ``text``: int32 token ids ``[N, length]`` of a caption from one of 8 templates
      ("a handwritten seven", "the number 7 drawn in ink", "seven, written by hand", ...) with the
      digit as a word or a numeral (probability 1/2 each) and a synonym of "handwritten";
    - ``vector``: float32 ``[N, vector_dim]``, ``C[y] + noise * e`` with a seeded random code
      ``C`` (10 x ``vector_dim``, entries N(0, 1)) and ``e ~ N(0, I)``;
    - ``image`` (only when ``image_size`` > 0): float32 ``[N, image_size, image_size, 1]`` in
      [0, 1], the digit drawn as a white numeral on black (DejaVu Sans, antialiased) with a random
      height (0.45-0.75 of the side), rotation (+-20 degrees), shift (+-10% of the side) and stroke
      width (0.5-2.5 px at 28x28). ``image_size: 28`` gives MHD's image shape, so an image encoder
      trained on MHD can be fine-tuned here.

    The tokenizer is fitted on the training captions only (``min_count``, at most ``max_vocab``
    ids) and kept as ``dataset.tokenizer``; test captions are encoded with it, so a word unseen in
    training becomes id 1. ``dataset.vocab_size`` is its size and never exceeds ``max_vocab``: a
    recipe that sets the encoder's ``vocab_size: <max_vocab>`` is always large enough.
    ``captions(split)`` gives the raw strings.

    Every random choice has its own seeded stream (the codes; each split's rows; each split's image
    poses), so a split is the same whatever else was loaded, and turning the image on changes
    neither the other modalities nor the labels.

    Parameters:
        num_train, num_test: rows per split.
        seed: one seed for everything.
        length: token ids per caption (captions are at most 8 tokens; shorter ones are padded with 0).
        vector_dim: size of the vector code.
        noise: standard deviation of the vector's noise.
        min_count: a word enters the vocabulary if seen this often in the training captions.
        max_vocab: the vocabulary's size cap, ids 0 and 1 included.
        image_size: the side of the ``image`` modality in pixels (at least 8); 0: no image.
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
        image_size: int = 0,
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
        if _positive_int("image_size", image_size, 0) and image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"digit_captions: image_size must be 0 (no image) or >= {MIN_IMAGE_SIZE}, got {image_size}"
            )
        self.image_size = image_size
        self.codes = _rng(self.seed, _STREAM_CODES).normal(size=(10, self.vector_dim)).astype(np.float32)

    # drawn on first use, so constructing the dataset (``mmkeras validate``) costs nothing
    @functools.cached_property
    def _rows(self) -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
        return {split: self._draw(split) for split in SPLITS}

    @functools.cached_property
    def _images(self) -> dict[str, np.ndarray]:
        return {
            split: render_digits(self._rows[split][0], self.image_size, _rng(self.seed, _STREAM_IMAGES, i))
            for i, split in enumerate(SPLITS)
        }

    @functools.cached_property
    def tokenizer(self) -> WordTokenizer:
        """The word tokenizer fitted on the training captions."""
        return WordTokenizer.fit(self._rows["train"][1], min_count=self.min_count, max_size=self.max_vocab)

    def info(self) -> dict[str, ModalityInfo]:
        info = {
            "text": ModalityInfo((self.length,), "int32", "token ids of an English caption of the digit, 0-padded"),
            "vector": ModalityInfo((self.vector_dim,), "float32", "the digit's random code plus Gaussian noise"),
        }
        if self.image_size:
            shape = (self.image_size, self.image_size, 1)
            info["image"] = ModalityInfo(shape, "float32", "the digit drawn as a numeral in a random pose, in [0, 1]")
        return info

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
        inputs = {"text": self.tokenizer.encode(captions, self.length), "vector": vectors.copy()}
        if self.image_size:
            inputs["image"] = self._images[split].copy()
        return DataSplit(inputs, digits.copy())

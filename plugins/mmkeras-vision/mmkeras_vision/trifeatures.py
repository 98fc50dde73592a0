"""The ``trifeatures`` dataset: CoMM's bimodal Trifeatures (Dufumier et al., ICLR 2025), rendered locally.

Trifeatures (Hermann & Lampinen, NeurIPS 2020) draws one of 10 shapes, filled with one of 10
textures, in one of 10 colours. The bimodal version pairs two such images that share their shape,
so the shape is redundant information, each image's texture is unique to it, and whether
(texture of image 1, colour of image 2) belongs to a fixed random bijection M between textures
and colours is synergistic: neither image alone says anything about it.

Determinism: every random choice comes from its own numpy ``SeedSequence`` stream keyed by the
seed: the train/test split of the 1,000 combinations, the bijection M, the pair attributes of each
split, and each image's rendering (keyed by split, pair index and image). Nothing depends on
whether the images were cached or on the number of worker processes, and the pairs and labels do
not depend on the image size either. (The official generator draws M and the pairs from the one
generator that rendering also consumes, so both change once the images are cached.)

Pure numpy and Pillow: the renderer runs in spawned worker processes.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mmkeras.plugin import CachedDataset, DataError, DataSplit, ModalityInfo

FORMAT_VERSION = 1

SHAPES = ("circle", "triangle", "square", "pentagon", "star", "cross", "heart", "crescent", "arrow", "semicircle")
TEXTURES = ("solid", "stripes", "checks", "dots", "grid", "waves", "rings", "zigzag", "bricks", "noise")
COLOURS = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 225, 30),
    "green": (40, 180, 60),
    "cyan": (30, 210, 220),
    "blue": (40, 70, 230),
    "purple": (130, 50, 200),
    "magenta": (230, 40, 200),
    "white": (250, 250, 250),
    "brown": (140, 80, 30),
}
COLOUR_NAMES = tuple(COLOURS)
N_ATTR = 10
N_COMBOS = N_ATTR**3
N_TRAIN_COMBOS = 800

#: named sizes -> (train, test) pairs; "full" has CoMM's 10,000 training pairs and ~4,096 test pairs
SIZES: dict[str, tuple[int, int]] = {
    "full": (10_000, 4_096),
    "small": (2_000, 500),
    "tiny": (200, 100),
}
TASKS = ("shared", "unique1", "unique2", "synergy")
TASK_LABELS = {
    "shared": "int64 shape 0-9 (task shared)",
    "unique1": "int64 texture of image 1, 0-9 (task unique1)",
    "unique2": "int64 texture of image 2, 0-9 (task unique2)",
    "synergy": "int64 0/1: (texture 1, colour 2) in the bijection M (task synergy)",
}
SPLITS = ("train", "test")

BACKGROUND = 128  # mid grey, as in CoMM
SHADE = 0.35  # the texture's "off" parts are the colour darkened to this fraction
RADIUS = 0.3  # shape radius as a fraction of the image side (CoMM: a 128-px shape on 224 px)
MAX_ROTATION = 45.0  # degrees, as in CoMM
NOISE_CELLS = 64  # side of the random cell grid of the "noise" texture
PAIRS_PER_WORKER = 2500  # at 32 px (about 5 s); fewer for larger images

# stream keys of the seeded SeedSequences (spawn_key=(stream, ...))
_STREAM_SPLIT, _STREAM_BIJECTION, _STREAM_PAIRS, _STREAM_IMAGE = 0, 1, 2, 3


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def split_sizes(size: str | int) -> tuple[int, int]:
    """(train, test) pairs of a named size or of an int N (N train, N // 5 test)."""
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    if isinstance(size, int) and not isinstance(size, bool) and size >= 5:
        return size, size // 5
    raise ValueError(f"trifeatures: size must be one of {list(SIZES)} or an int >= 5 (training pairs), got {size!r}")


def attributes(combo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shape, texture, colour) of combination ids ``shape * 100 + texture * 10 + colour``."""
    combo = np.asarray(combo)
    return combo // 100, (combo // 10) % 10, combo % 10


def combination_split(seed: int) -> dict[str, np.ndarray]:
    """The 800 training and 200 test combinations (sorted ids), from their own seeded stream."""
    order = _rng(seed, _STREAM_SPLIT).permutation(N_COMBOS)
    return {"train": np.sort(order[:N_TRAIN_COMBOS]), "test": np.sort(order[N_TRAIN_COMBOS:])}


def bijection(seed: int) -> np.ndarray:
    """M as an array: ``M[texture]`` is the colour paired with that texture (a random permutation)."""
    return _rng(seed, _STREAM_BIJECTION).permutation(N_ATTR)


def sample_pairs(combos: np.ndarray, n: int, rng: np.random.Generator, constraint: np.ndarray | None) -> np.ndarray:
    """[n, 2] combination ids: the first uniform over ``combos``, the second uniform over the
    combinations of ``combos`` with the same shape (and, given ``constraint`` = M, with colour
    ``M[texture of the first]``); the first is drawn only among those that have such a partner.

    Row i uses the i-th pair of uniforms of ``rng``, so a smaller size is a prefix of a larger one.
    """
    shape, texture, colour = attributes(combos)
    partners = []
    for s, t in zip(shape, texture):
        ok = shape == s if constraint is None else (shape == s) & (colour == constraint[t])
        partners.append(combos[ok])
    firsts = [i for i, p in enumerate(partners) if len(p)]
    if not firsts:
        raise DataError("trifeatures: no pair of combinations satisfies the bias constraint in this split")
    u = rng.random((n, 2))
    first = np.asarray(firsts)[np.floor(u[:, 0] * len(firsts)).astype(np.int64)]
    second = np.array([partners[f][int(v * len(partners[f]))] for f, v in zip(first, u[:, 1])], dtype=np.int64)
    return np.stack([combos[first], second], axis=1)


# -- rendering ------------------------------------------------------------------------------


def _regular(k: int, radius: float = 1.0, phase: float = -90.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(math.radians(phase + 360.0 * i / k)), radius * math.sin(math.radians(phase + 360.0 * i / k)))
        for i in range(k)
    ]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5), _regular(5, 0.45, -90.0 + 36.0)
    return [p for pair in zip(outer, inner) for p in pair]


def _heart() -> list[tuple[float, float]]:
    t = np.linspace(0.0, 2.0 * np.pi, 60, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return list(zip(x / 17.0, (y + 2.5) / 17.0))


def _semicircle() -> list[tuple[float, float]]:
    t = np.linspace(0.0, np.pi, 30)
    return list(zip(np.cos(t), 0.4 - np.sin(t)))


#: each shape as polygons in unit coordinates (y down), drawn in order: (vertices, filled?)
SHAPE_POLYGONS: dict[str, list[tuple[list[tuple[float, float]], bool]]] = {
    "circle": [(_regular(48), True)],
    "triangle": [(_regular(3), True)],
    "square": [(_regular(4, 1.0, -45.0), True)],
    "pentagon": [(_regular(5), True)],
    "star": [(_star(), True)],
    "cross": [
        (
            [
                (-0.3, -1),
                (0.3, -1),
                (0.3, -0.3),
                (1, -0.3),
                (1, 0.3),
                (0.3, 0.3),
                (0.3, 1),
                (-0.3, 1),
                (-0.3, 0.3),
                (-1, 0.3),
                (-1, -0.3),
                (-0.3, -0.3),
            ],
            True,
        )
    ],
    "heart": [(_heart(), True)],
    "crescent": [(_regular(48), True), ([(x + 0.5, y - 0.2) for x, y in _regular(48, 0.85)], False)],
    "arrow": [([(-1, -0.28), (0.15, -0.28), (0.15, -0.7), (1, 0), (0.15, 0.7), (0.15, 0.28), (-1, 0.28)], True)],
    "semicircle": [(_semicircle(), True)],
}


def _period(image_size: int) -> float:
    """Texture period in output pixels: CoMM's 10 px at 224 px, but never under 4 px."""
    return max(4.0, 10.0 * image_size / 224.0)


def _texture_mask(texture: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, p: float, cells: np.ndarray) -> np.ndarray:
    """Where the texture is "on", from texture coordinates (u, v), the distance r to the shape centre
    and the period p, all in output pixels."""
    name = TEXTURES[texture]
    fu, fv = u / p - np.floor(u / p), v / p - np.floor(v / p)
    if name == "solid":
        return np.ones_like(u, dtype=bool)
    if name == "stripes":
        return fu < 0.5
    if name == "checks":
        return (np.floor(2 * u / p) + np.floor(2 * v / p)) % 2 == 0
    if name == "dots":
        return (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < 0.3**2
    if name == "grid":
        return (fu < 0.3) | (fv < 0.3)
    if name == "waves":
        w = (u + 0.4 * p * np.sin(np.pi * v / p)) / p
        return w - np.floor(w) < 0.5
    if name == "rings":
        w = r / p
        return w - np.floor(w) < 0.5
    if name == "zigzag":
        tri = 2.0 * np.abs(v / (2 * p) - np.floor(v / (2 * p) + 0.5))  # triangle wave in [0, 1]
        w = (u + 0.8 * p * tri) / p
        return w - np.floor(w) < 0.5
    if name == "bricks":
        row = np.floor(v / p)
        joint = (u / (2 * p) + 0.5 * (row % 2)) % 1.0
        return ~((fv < 0.25) | (joint < 0.125))
    n = cells.shape[0]  # "noise": random on/off cells of half a period
    return cells[np.floor(2 * v / p).astype(np.int64) % n, np.floor(2 * u / p).astype(np.int64) % n]


def render(shape: int, texture: int, colour: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One image, uint8 [S, S, 3]: the textured, coloured shape on grey, rotated by U(-45, 45)
    degrees at a uniform position that keeps it inside the image.

    The draws from ``rng`` do not depend on the image size, so one stream gives the same shape,
    pose and position at any resolution (the texture period is in pixels, at least 4). Drawn at
    2-4x the size and box-filtered down (antialiasing).
    """
    angle, cx, cy, tex_angle, phase_u, phase_v = rng.random(6)
    cells = rng.random((NOISE_CELLS, NOISE_CELLS)) < 0.5
    angle = math.radians((2.0 * angle - 1.0) * MAX_ROTATION)
    tex_angle = 2.0 * math.pi * tex_angle
    cx, cy = RADIUS + cx * (1.0 - 2 * RADIUS), RADIUS + cy * (1.0 - 2 * RADIUS)
    ss = int(min(4, max(2, math.ceil(128 / image_size))))
    n = image_size * ss

    mask_img = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask_img)
    cos, sin = math.cos(angle), math.sin(angle)
    for vertices, filled in SHAPE_POLYGONS[SHAPES[shape]]:
        points = [
            ((cx + RADIUS * (x * cos - y * sin)) * n, (cy + RADIUS * (x * sin + y * cos)) * n) for x, y in vertices
        ]
        draw.polygon(points, fill=255 if filled else 0)
    inside = np.asarray(mask_img) > 0

    p = _period(image_size)
    grid = (np.arange(n, dtype=np.float32) + 0.5) / ss  # pixel centres in output pixels
    dx, dy = grid[None, :] - cx * image_size, grid[:, None] - cy * image_size
    tc, ts = math.cos(tex_angle), math.sin(tex_angle)
    u = dx * tc + dy * ts + phase_u * p
    v = -dx * ts + dy * tc + phase_v * p
    on = _texture_mask(texture, u, v, np.sqrt(dx**2 + dy**2) + phase_u * p, p, cells)

    # the image is linear in these two maps, so they are box-filtered before colouring: 3x less work
    brightness = np.where(on, np.float32(1.0), np.float32(SHADE)) * inside
    brightness = brightness.reshape(image_size, ss, image_size, ss).mean(axis=(1, 3))
    coverage = inside.reshape(image_size, ss, image_size, ss).mean(axis=(1, 3), dtype=np.float32)
    rgb = np.asarray(COLOURS[COLOUR_NAMES[colour]], dtype=np.float32)
    image = brightness[..., None] * rgb + (1.0 - coverage[..., None]) * np.float32(BACKGROUND)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render_pairs(seed: int, split: str, first: int, pairs: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [len(pairs), 2, S, S, 3]: the images of pairs ``first``, ``first + 1``, ...; image j of
    pair i is rendered from the stream (seed, split, i, j) alone."""
    split_id = SPLITS.index(split)
    out = np.empty((len(pairs), 2, image_size, image_size, 3), dtype=np.uint8)
    for k, (c1, c2) in enumerate(pairs):
        for j, combo in enumerate((c1, c2)):
            s, t, c = (int(a) for a in attributes(combo))
            out[k, j] = render(s, t, c, image_size, _rng(seed, _STREAM_IMAGE, split_id, first + k, j))
    return out


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Trifeatures(CachedDataset):
    """Bimodal Trifeatures (CoMM): pairs of images ``image1``, ``image2`` that share their shape.

    Inputs: ``image1`` and ``image2``, float32 [N, S, S, 3] in [0, 1] (grey background).
    ``labels`` are those of ``task``; :meth:`labels_for` gives every label of a split:

    - ``shared`` (redundancy R): the shape, 0-9;
    - ``unique1`` / ``unique2`` (uniqueness U1 / U2): the texture of image 1 / image 2, 0-9;
    - ``synergy`` (S): 1 if (texture of image 1, colour of image 2) is in the bijection M, else 0
      (about 10% positive on unbiased pairs);
    - and the attributes ``shape``, ``texture1``, ``colour1``, ``texture2``, ``colour2``.

    The 1,000 combinations are split 800 train / 200 test (seeded); a split's pairs use only its
    combinations. ``biased`` (CoMM's synergy pretraining) draws the training pairs only among those
    with (texture 1, colour 2) in M; the test split is always unbiased (probes are scored on
    unbiased pairs; for probe training pairs build the same seed with ``biased: false``, which has
    the same combinations and M).

    Parameters:
        size: "full" (10,000 train / 4,096 test pairs), "small" (2,000 / 500), "tiny" (200 / 100),
            or an int N for N train and N // 5 test pairs.
        image_size: image side S in pixels (CoMM used 224; 32 is quick on a CPU).
        seed: one seed for the split, M, the pairs and the renders.
        biased: constrain training pairs to (texture 1, colour 2) in M.
        task: which label ``load`` returns as ``labels``: shared, unique1, unique2 or synergy.
        data_dir: cache root (default ``$MMKERAS_DATA_DIR``, else ``~/.cache/mmkeras``); files go
            in ``<data_dir>/trifeatures/``.
        workers: processes rendering the images (default: all usable cores; large builds only).
            They are spawned, so a script that builds the data needs the usual
            ``if __name__ == "__main__":`` guard, or ``workers: 1``.
    """

    splits = SPLITS
    cache_name = "trifeatures"

    def __init__(
        self,
        size: str | int = "full",
        image_size: int = 32,
        seed: int = 0,
        biased: bool = False,
        task: str = "shared",
        data_dir: str | None = None,
        workers: int | None = None,
    ) -> None:
        n_train, n_test = split_sizes(size)
        if not isinstance(image_size, int) or isinstance(image_size, bool) or not 16 <= image_size <= 1024:
            raise ValueError(f"trifeatures: image_size must be an int in [16, 1024], got {image_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"trifeatures: seed must be a non-negative int, got {seed!r}")
        if type(biased) is not bool:
            raise ValueError(f"trifeatures: biased must be true or false, got {biased!r}")
        if task not in TASKS:
            raise ValueError(f"trifeatures: task must be one of {list(TASKS)}, got {task!r}")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ValueError(f"trifeatures: data_dir must be a non-empty path string or None, got {data_dir!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"trifeatures: workers must be a positive int or None, got {workers!r}")
        self.size, self.image_size, self.seed = size, image_size, seed
        self.biased, self.task = biased, task
        self.sizes = {"train": n_train, "test": n_test}
        self.workers = workers if workers is not None else _cpu_count()
        self.set_cache_dir(data_dir)
        self.combinations = combination_split(seed)
        self.bijection = bijection(seed)
        self._pairs: dict[str, np.ndarray] = {}

    def info(self) -> dict[str, ModalityInfo]:
        s = self.image_size
        return {f"image{j}": ModalityInfo((s, s, 3), "float32", f"image {j} of the pair, in [0, 1]") for j in (1, 2)}

    def label_info(self) -> str:
        return TASK_LABELS[self.task]

    # -- pairs and labels (cheap, never cached) --------------------------------------------------
    def is_biased(self, split: str) -> bool:
        return self.biased and split == "train"

    def pairs(self, split: str) -> np.ndarray:
        """[N, 2] combination ids of the split's pairs (``shape * 100 + texture * 10 + colour``)."""
        self._check_split(split)
        if split not in self._pairs:
            rng = _rng(self.seed, _STREAM_PAIRS, SPLITS.index(split), int(self.is_biased(split)))
            constraint = self.bijection if self.is_biased(split) else None
            self._pairs[split] = sample_pairs(self.combinations[split], self.sizes[split], rng, constraint)
        return self._pairs[split]

    def labels_for(self, split: str) -> dict[str, np.ndarray]:
        """Every label of ``split`` as int64 [N] arrays: shared, unique1, unique2, synergy, and
        the attributes shape, texture1, colour1, texture2, colour2."""
        pairs = self.pairs(split)
        shape, texture1, colour1 = attributes(pairs[:, 0])
        _, texture2, colour2 = attributes(pairs[:, 1])
        synergy = (self.bijection[texture1] == colour2).astype(np.int64)
        return {
            "shared": shape,
            "unique1": texture1,
            "unique2": texture2,
            "synergy": synergy,
            "shape": shape,
            "texture1": texture1,
            "colour1": colour1,
            "texture2": texture2,
            "colour2": colour2,
        }

    # -- images (rendered once, cached) ----------------------------------------------------------
    def cache_version(self) -> int:
        return FORMAT_VERSION

    def cache_key(self, split: str) -> str:
        # the names of format 1's own cache code, so caches made before CachedDataset are still read
        bias = "_biased" if self.is_biased(split) else ""
        return f"n{self.sizes[split]}_s{self.image_size}_seed{self.seed}{bias}"

    def build(self, splits: list[str], progress: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for split in splits:
            start = time.perf_counter()
            if progress:
                print(
                    f"trifeatures: rendering {self.sizes[split]} {split} pairs at {self.image_size} px", file=sys.stderr
                )
            yield split, {"images": self._render(split), "pairs": self.pairs(split)}
            if progress:
                print(f"trifeatures: {self.cache_path(split)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    def _render(self, split: str) -> np.ndarray:
        pairs = self.pairs(split)
        # a worker process costs seconds to start: give each several seconds of rendering
        per_worker = max(1, PAIRS_PER_WORKER * 32**2 // self.image_size**2)
        workers = max(1, min(self.workers, len(pairs) // per_worker))
        if workers == 1:
            return render_pairs(self.seed, split, 0, pairs, self.image_size)
        chunk = -(-len(pairs) // (4 * workers))
        starts = list(range(0, len(pairs), chunk))
        # spawn, not fork: the parent may run TensorFlow, whose threads do not survive fork
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            parts = pool.map(
                render_pairs,
                [self.seed] * len(starts),
                [split] * len(starts),
                starts,
                [pairs[s : s + chunk] for s in starts],
                [self.image_size] * len(starts),
            )
            return np.concatenate(list(parts))

    def decode(self, split: str, arrays: Any) -> DataSplit:
        images, cached_pairs = arrays["images"], arrays["pairs"]
        if not np.array_equal(cached_pairs, self.pairs(split)):
            raise DataError(
                f"trifeatures: cache file {self.cache_path(split)} holds other pairs than this version makes; delete it"
            )
        inputs = {
            "image1": images[:, 0].astype(np.float32) / 255.0,
            "image2": images[:, 1].astype(np.float32) / 255.0,
        }
        return DataSplit(inputs, self.labels_for(split)[self.task])

"""Build MHD samples from real signals: Hershey font strokes and eSpeak NG speech.

Pure numpy / Pillow / librosa / ctypes: this module runs in spawned worker processes and must
never import tensorflow or keras.

Determinism: every random choice of sample ``i`` comes from a generator seeded by
``(seed, split, i)``; labels come in blocks of ten (each digit once, shuffled by a generator
seeded by the block). Speech is synthesised in fixed chunks of :data:`CHUNK` samples by a fresh
:class:`~mmkeras_mhd.speech.Speaker` per chunk, so the arrays do not depend on the number of
workers, and a sample is the same in every size that contains it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache

import librosa
import numpy as np
from HersheyFonts import HersheyFonts
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mmkeras_mhd.speech import ACCENTS, SAMPLE_RATE, VARIANTS, Speaker, voice_name

FORMAT_VERSION = 2  # bump whenever the generated arrays change
SPLIT_IDS = {"train": 0, "test": 1}
CHUNK = 100  # samples per task and per Speaker instance; a multiple of 10 (label blocks)

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Hershey fonts with distinct digit glyphs (the others repeat one of these), our "writers":
#: simplex, duplex, complex, triplex, italic complex, italic triplex, gothic.
FONTS = ("futural", "rowmand", "timesr", "rowmant", "scripts", "timesib", "gothiceng")

IMAGE_SIZE = 28
BOX = 20  # MNIST fits each digit's bounding box in 20x20 pixels, then centres its mass
OVERSAMPLE = 4  # drawn at 4x resolution, then box-filtered down for antialiasing
RENDER_STRIDE = 3  # every 3rd dense point (about 3.6 px apart at 4x) is smooth enough to draw
N_POINTS = 100
TRAJECTORY_SCALE = 1.25  # distorted glyphs reach about +-1.2; keeps trajectories in ~[-1, 1]

N_MELS, N_FRAMES = 32, 128
N_FFT, HOP = 512, 172  # 128 hops of 172 samples cover 1.0 s at 22,050 Hz
CLIP = N_FFT + HOP * (N_FRAMES - 1)  # samples that give exactly N_FRAMES frames without padding

_STREAM_LABELS, _STREAM_SAMPLE = 0, 1

#: one unit of work: (seed, split id, first index, end index, workdir for Speaker)
Task = tuple[int, int, int, int, str | None]


@cache
def glyph_strokes() -> dict[str, list[list[np.ndarray]]]:
    """font -> digit -> strokes ([k, 2] float arrays, y up), centred, 2 units tall."""
    out: dict[str, list[list[np.ndarray]]] = {}
    for font in FONTS:
        hf = HersheyFonts()
        hf.load_default_font(font)
        digits = []
        for d in range(10):
            strokes = [np.array(s, dtype=np.float64) for s in hf.strokes_for_text(str(d))]
            strokes = [s * [1.0, -1.0] for s in strokes if len(s) > 1]  # Hershey's y points down
            pts = np.concatenate(strokes)
            centre = (pts.min(0) + pts.max(0)) / 2
            half_height = (pts[:, 1].max() - pts[:, 1].min()) / 2
            digits.append([(s - centre) / half_height for s in strokes])
        out[font] = digits
    return out


def _densify(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` units along a polyline (its vertices' corners are kept roughly)."""
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / step)) + 1))
    return np.stack([np.interp(t, arc, stroke[:, 0]), np.interp(t, arc, stroke[:, 1])], axis=1)


def distort(strokes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """A "writer's" version of a glyph: elastic wobble, random affine map and pen jitter."""
    dense = [_densify(s, 0.03) for s in strokes]
    # smooth displacement field: a few random plane waves, so nearby points move together
    n_waves = 3
    freq = rng.normal(0.0, 2.0, size=(n_waves, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_waves, 2))
    amp = rng.uniform(0.0, 0.05, size=(n_waves, 2))
    angle = np.deg2rad(rng.normal(0.0, 8.0))
    shear = rng.uniform(-0.25, 0.25)
    scale = rng.uniform([0.75, 0.85], [1.1, 1.1])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    shift = rng.uniform(-0.08, 0.08, size=2)
    out = []
    for p in dense:
        wobble = (amp * np.sin((p @ freq.T)[:, :, None] + phase)).sum(axis=1)
        p = (p + wobble) @ linear.T + shift
        out.append(p + rng.normal(0.0, 0.006, size=p.shape))
    return out


def resample_path(strokes: list[np.ndarray], n: int) -> np.ndarray:
    """``n`` points evenly spaced along the inked length of the strokes, in writing order."""
    pts = np.concatenate(strokes)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    ends = np.cumsum([len(s) for s in strokes[:-1]], dtype=np.int64) - 1
    seg[ends] = 0.0  # pen-up moves between strokes carry no ink
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, arc[-1], n)
    # side="right" puts a target that falls on a pen-up move at the start of the next stroke
    idx = np.clip(np.searchsorted(arc, t, side="right") - 1, 0, len(pts) - 2)
    frac = (t - arc[idx]) / np.maximum(seg[idx], 1e-12)
    return pts[idx] + np.clip(frac, 0.0, 1.0)[:, None] * (pts[idx + 1] - pts[idx])


def render_image(strokes: list[np.ndarray], width: float) -> np.ndarray:
    """MNIST-style uint8 [28, 28]: white strokes on black, box fitted to 20 px, mass centred."""
    big = IMAGE_SIZE * OVERSAMPLE
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    scale = BOX * OVERSAMPLE / max(float((hi - lo).max()), 1e-6)
    centre = (lo + hi) / 2
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    w = width * OVERSAMPLE
    for s in strokes:
        xy = (s - centre) * [scale, -scale] + big / 2  # image rows grow downwards
        xy = np.concatenate([xy[::RENDER_STRIDE], xy[-1:]])
        draw.line(xy.ravel().tolist(), fill=255, width=max(1, round(w)))
        for x, y in xy:  # round joints and pen tips (Pillow's curved joints are slow)
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    a = np.asarray(img, dtype=np.float64)
    mass = a.sum()
    rows, cols = np.arange(big), np.arange(big)
    dy = round((big - 1) / 2 - (a.sum(1) @ rows) / mass)
    dx = round((big - 1) / 2 - (a.sum(0) @ cols) / mass)
    img = img.transform(img.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy))
    return np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


@cache
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=60.0, fmax=8000.0, dtype=np.float64)


def sound_features(clip: np.ndarray) -> np.ndarray:
    """[32, 128] log-mel energies of a :data:`CLIP`-sample clip, standardised per clip."""
    # float64 throughout: the FFT's and BLAS's summation order (SIMD kernels, thread count)
    # then changes only digits far below the float16 the cache stores
    stft = librosa.stft(clip.astype(np.float64), n_fft=N_FFT, hop_length=HOP, center=False)
    db = librosa.power_to_db(_mel_basis() @ (np.abs(stft) ** 2), ref=1.0, top_db=None)
    return (db - db.mean()) / (db.std() + 1e-6)


def speak(speaker: Speaker, label: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 :data:`CLIP`-sample clip: the digit's word in a random voice, shifted, noisy."""
    voice = voice_name(ACCENTS[rng.integers(len(ACCENTS))], VARIANTS[rng.integers(len(VARIANTS))])
    rate, pitch, pitch_range = rng.integers([120, 25, 20], [241, 76, 81])
    noise_seed = int(rng.integers(2**31))
    wave = speaker.say(WORDS[label], voice, rate, pitch, pitch_range, noise_seed)
    wave = wave.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(wave) > 0.01 * np.abs(wave).max())
    wave = wave[loud[0] : loud[-1] + 1][:CLIP]  # trim eSpeak's silences; rare slow words are cut
    clip = np.zeros(CLIP, dtype=np.float32)
    offset = int(rng.integers(CLIP - len(wave) + 1))
    clip[offset : offset + len(wave)] = wave
    snr_db = rng.uniform(10.0, 30.0)
    noise_std = np.sqrt(np.mean(wave**2) / 10 ** (snr_db / 10))
    return clip + rng.normal(0.0, noise_std, size=CLIP).astype(np.float32)


def _sample_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_id, _STREAM_SAMPLE, index)))


def labels_for(seed: int, split_id: int, start: int, stop: int) -> np.ndarray:
    """Labels of samples ``start..stop-1``: every aligned block of ten holds each digit once."""
    blocks = range(start // 10, (stop + 9) // 10)
    perms = [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_id, _STREAM_LABELS, b))).permutation(10)
        for b in blocks
    ]
    first = blocks.start * 10
    return np.concatenate(perms)[start - first : stop - first].astype(np.int64)


def make_chunk(task: Task) -> dict[str, np.ndarray]:
    """Samples ``start..stop-1`` of a split; ``task = (seed, split_id, start, stop, workdir)``."""
    seed, split_id, start, stop, workdir = task
    labels = labels_for(seed, split_id, start, stop)
    n = stop - start
    out = {
        "image": np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
        "sound": np.zeros((n, N_MELS, N_FRAMES), dtype=np.float16),
        "trajectory": np.zeros((n, 2 * N_POINTS), dtype=np.float32),
        "labels": labels,
    }
    glyphs = glyph_strokes()
    # one worker per core already: BLAS threads would only fight over the cores (10x slower)
    with threadpool_limits(1), Speaker(workdir) as speaker:  # fresh Speaker: see module doc
        for k, label in enumerate(labels):
            rng = _sample_rng(seed, split_id, start + k)
            strokes = distort(glyphs[FONTS[rng.integers(len(FONTS))]][label], rng)
            out["trajectory"][k] = resample_path(strokes, N_POINTS).ravel() / TRAJECTORY_SCALE
            out["image"][k] = render_image(strokes, rng.uniform(1.6, 3.2))
            out["sound"][k] = sound_features(speak(speaker, int(label), rng))
    return out


def _tasks(seed: int, sizes: dict[str, int], workdir: str | None) -> Iterator[tuple[str, Task]]:
    for split, n in sizes.items():
        for start in range(0, n, CHUNK):
            yield split, (seed, SPLIT_IDS[split], start, min(start + CHUNK, n), workdir)


def build(
    seed: int,
    sizes: dict[str, int],
    workers: int = 1,
    progress: bool = True,
    workdir: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Generate each split of ``sizes`` (split -> number of samples) on ``workers`` processes.

    Returns split -> {"image": uint8 [N,28,28], "sound": float16 [N,32,128],
    "trajectory": float32 [N,200], "labels": int64 [N]}. ``workdir`` holds the short-lived
    library copies of :class:`~mmkeras_mhd.speech.Speaker` (default: the temp directory).
    """
    labelled = list(_tasks(seed, sizes, workdir))
    parts: dict[str, list[dict[str, np.ndarray]]] = {split: [] for split in sizes}
    bar = tqdm(total=sum(sizes.values()), desc="mhd", unit="sample", disable=not progress)
    tasks = [task for _, task in labelled]
    with bar, contextlib.ExitStack() as stack:
        if workers > 1 and len(tasks) > 1:
            # spawn, not fork: the parent may run TensorFlow, whose threads do not survive fork
            pool = ProcessPoolExecutor(min(workers, len(tasks)), multiprocessing.get_context("spawn"))
            # on an error or Ctrl-C, drop the queued chunks instead of finishing them
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            chunks: Iterator[dict[str, np.ndarray]] = pool.map(make_chunk, tasks)
        else:
            chunks = map(make_chunk, tasks)
        try:
            for (split, _), chunk in zip(labelled, chunks, strict=True):
                parts[split].append(chunk)
                bar.update(len(chunk["labels"]))
        except BrokenProcessPool as exc:
            raise RuntimeError(
                "MHD worker processes died; a script that builds MHD with workers > 1 must do "
                "so under `if __name__ == '__main__':` (they re-import it), or pass workers=1"
            ) from exc
    return {split: {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} for split, pieces in parts.items()}

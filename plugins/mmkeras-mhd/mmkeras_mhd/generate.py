"""Build MHD samples from real signals: Hershey font strokes and eSpeak NG speech.

Pure numpy / Pillow / librosa / ctypes: this module runs in spawned worker processes and must
never import tensorflow or keras.

Determinism: every random choice of sample ``i`` comes from a generator seeded by
``(seed, split, i)``; labels come in blocks of ten (each digit once, shuffled by a generator
seeded by the block). Speech is synthesised in fixed chunks of :data:`CHUNK` samples by a fresh
:class:`~mmkeras_mhd.speech.Speaker` per chunk, so the arrays do not depend on the number of
workers, and a sample is the same in every size that contains it. The sound's added realism
(babble, reverberation) draws from generators of its own, seeded by ``(seed, split, i, effect)``,
and babble is spoken by a second ``Speaker``: switching an effect on or off leaves the rest of
the sample unchanged.

:class:`Realism` holds the parameters of the signals' variability (noise, babble, reverberation,
band limiting, speaking rate and pitch; pen width, jitter and affine range); :data:`REALISM` names
its presets. ``Realism()`` (preset ``"default"``) gives the arrays of format
:data:`FORMAT_VERSION` byte for byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from typing import Any

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

_STREAM_LABELS, _STREAM_SAMPLE, _STREAM_EFFECTS = 0, 1, 2
_BABBLE, _REVERB = 0, 1  # children of a sample's effects stream
NYQUIST = SAMPLE_RATE / 2
MAX_BABBLE_TALKERS = 8
MAX_RT60_S = 2.0


def _range(name: str, value: Any, kind: type, lo: float, hi: float, strict: bool = False) -> tuple[Any, Any]:
    """``value`` as a (low, high) pair of ``kind`` within [lo, hi], low <= high (low < high if ``strict``)."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if ok and kind is int:
        ok = all(float(v).is_integer() for v in value)
    if ok:
        a, b = (kind(v) for v in value)
        if math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi and (a < b or not strict):
            return a, b
    order = "<" if strict else "<="
    raise ValueError(
        f"MHD: {name} must be a (low, high) range of {kind.__name__}s with {lo:g} <= low {order} high <= {hi:g}, "
        f"got {value!r}"
    )


def _number(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    """``value`` as a ``kind`` within [lo, hi]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (kind is float or float(value).is_integer()) and math.isfinite(value) and lo <= value <= hi
    if not ok:
        raise ValueError(
            f"MHD: {name} must be {'an int' if kind is int else 'a number'} in [{lo:g}, {hi:g}], got {value!r}"
        )
    return kind(value)


@dataclass(frozen=True)
class Realism:
    """How variable and degraded the generated signals are; the defaults give today's MHD.

    Every ``(low, high)`` range is sampled uniformly per sample (integers inclusive).

    Args:
        snr_db: white noise added last, at this signal-to-noise ratio in dB: the power of the
            spoken word (over its own span, before any other effect) over the noise's power.
        babble_talkers: other voices in the background, each saying another digit (distinct
            digits, each different from the sample's), at a random offset; 0: no babble.
        babble_snr_db: the word's power over the babble's (all talkers together, over the clip),
            in dB; used when ``babble_talkers > 0``.
        rt60_s: reverberation time in seconds: the word and babble are convolved with an
            exponentially decaying white-noise impulse response (energy down 60 dB after RT60,
            unit energy, as long as RT60); (0, 0): no reverberation.
        band_hz: the pass band (low, high) in Hz, a telephone-like channel applied after the
            reverberation and before the white noise (an ideal filter: FFT bins outside are
            zeroed); (0, 11025): the full band, no filtering.
        rate_wpm: eSpeak's speaking rate, words per minute (80..450).
        pitch: eSpeak's base pitch (0..100; 50 is the voice's own).
        pitch_range: eSpeak's intonation range (0..100).
        stroke_width: pen width in pixels of the 28 x 28 image.
        jitter: standard deviation of the pen's jitter, in glyph units (a glyph is 2 units tall).
        affine: scales the ranges of the random rotation (8 degree standard deviation), shear
            (+-0.25), scale (0.75-1.1 wide, 0.85-1.1 tall) and shift (+-0.08) around the identity;
            0: no affine distortion.
    """

    snr_db: tuple[float, float] = (10.0, 30.0)
    babble_talkers: int = 0
    babble_snr_db: tuple[float, float] = (5.0, 15.0)
    rt60_s: tuple[float, float] = (0.0, 0.0)
    band_hz: tuple[float, float] = (0.0, NYQUIST)
    rate_wpm: tuple[int, int] = (120, 240)
    pitch: tuple[int, int] = (25, 75)
    pitch_range: tuple[int, int] = (20, 80)
    stroke_width: tuple[float, float] = (1.6, 3.2)
    jitter: float = 0.006
    affine: float = 1.0

    def __post_init__(self) -> None:
        checked = {
            "snr_db": _range("snr_db", self.snr_db, float, -60.0, 120.0),
            "babble_talkers": _number("babble_talkers", self.babble_talkers, int, 0, MAX_BABBLE_TALKERS),
            "babble_snr_db": _range("babble_snr_db", self.babble_snr_db, float, -60.0, 120.0),
            "rt60_s": _range("rt60_s", self.rt60_s, float, 0.0, MAX_RT60_S),
            "band_hz": _range("band_hz", self.band_hz, float, 0.0, NYQUIST, strict=True),
            "rate_wpm": _range("rate_wpm", self.rate_wpm, int, 80, 450),
            "pitch": _range("pitch", self.pitch, int, 0, 100),
            "pitch_range": _range("pitch_range", self.pitch_range, int, 0, 100),
            "stroke_width": _range("stroke_width", self.stroke_width, float, 0.5, 8.0),
            "jitter": _number("jitter", self.jitter, float, 0.0, 0.1),
            "affine": _number("affine", self.affine, float, 0.0, 2.0),
        }
        for name, value in checked.items():  # lists (from YAML) become tuples, ints floats
            object.__setattr__(self, name, value)

    def key(self) -> str:
        """For cache file names: the preset's name if it is one (else "realism"), a dash, and a
        short digest of every field."""
        name = next((k for k, v in REALISM.items() if v == self), "realism")
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


#: named settings. ``"hard"``: a telephone call from a noisy, reverberant room in which the digit's
#: speaker stays the loudest voice (white noise and babble each 5-15 dB below the word), every
#: effect on at once; image and trajectory as in ``"default"`` (see the plugin README for why).
REALISM: dict[str, Realism] = {
    "default": Realism(),
    "hard": Realism(
        snr_db=(5.0, 15.0),
        babble_talkers=2,
        babble_snr_db=(5.0, 15.0),
        rt60_s=(0.3, 0.8),
        band_hz=(300.0, 3400.0),
        rate_wpm=(100, 280),
        pitch=(15, 85),
        pitch_range=(10, 90),
    ),
}


def realism_from(name: str, **overrides: Any) -> Realism:
    """The preset ``name`` of :data:`REALISM` with the ``overrides`` that are not None."""
    if not isinstance(name, str) or name not in REALISM:
        raise ValueError(f"MHD: realism must be one of {sorted(REALISM)}, got {name!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Realism)}
    if unknown:
        raise TypeError(f"realism_from: no realism parameter(s) {sorted(unknown)}")
    return dataclasses.replace(REALISM[name], **{k: v for k, v in overrides.items() if v is not None})


#: one unit of work: (seed, split id, first index, end index, workdir for Speaker, realism)
Task = tuple[int, int, int, int, str | None, Realism]


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


def distort(
    strokes: list[np.ndarray], rng: np.random.Generator, jitter: float = 0.006, affine: float = 1.0
) -> list[np.ndarray]:
    """A "writer's" version of a glyph: elastic wobble, random affine map and pen jitter.

    ``affine`` scales the affine ranges around the identity; ``jitter`` is the pen's standard deviation.
    """
    dense = [_densify(s, 0.03) for s in strokes]
    # smooth displacement field: a few random plane waves, so nearby points move together
    n_waves = 3
    freq = rng.normal(0.0, 2.0, size=(n_waves, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_waves, 2))
    amp = rng.uniform(0.0, 0.05, size=(n_waves, 2))
    angle = np.deg2rad(rng.normal(0.0, 8.0 * affine))
    shear = rng.uniform(-0.25 * affine, 0.25 * affine)
    scale = rng.uniform(1.0 - affine * np.array([0.25, 0.15]), 1.0 + affine * np.array([0.1, 0.1]))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    shift = rng.uniform(-0.08 * affine, 0.08 * affine, size=2)
    out = []
    for p in dense:
        wobble = (amp * np.sin((p @ freq.T)[:, :, None] + phase)).sum(axis=1)
        p = (p + wobble) @ linear.T + shift
        out.append(p + rng.normal(0.0, jitter, size=p.shape))
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


def utterance(speaker: Speaker, word: str, rng: np.random.Generator, realism: Realism) -> np.ndarray:
    """``word`` in a random voice, rate and pitch: float32, eSpeak's silences trimmed, at most a clip."""
    voice = voice_name(ACCENTS[rng.integers(len(ACCENTS))], VARIANTS[rng.integers(len(VARIANTS))])
    (r0, r1), (p0, p1), (q0, q1) = realism.rate_wpm, realism.pitch, realism.pitch_range
    rate, pitch, pitch_range = rng.integers([r0, p0, q0], [r1 + 1, p1 + 1, q1 + 1])
    noise_seed = int(rng.integers(2**31))
    wave = speaker.say(word, voice, rate, pitch, pitch_range, noise_seed)
    wave = wave.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(wave) > 0.01 * np.abs(wave).max())
    return wave[loud[0] : loud[-1] + 1][:CLIP]  # rare slow words are cut


def place(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float32 :data:`CLIP`-sample clip holding ``wave`` at a random offset, silent elsewhere."""
    clip = np.zeros(CLIP, dtype=np.float32)
    offset = int(rng.integers(CLIP - len(wave) + 1))
    clip[offset : offset + len(wave)] = wave
    return clip


def babble(
    speaker: Speaker, label: int, power: float, snr_db: float, talkers: int, rng: np.random.Generator, realism: Realism
) -> np.ndarray:
    """``talkers`` voices saying other digits (distinct, none ``label``), each at a random offset
    and equally loud, together at ``snr_db`` below ``power`` (mean square over the clip)."""
    digits = rng.choice([d for d in range(10) if d != label], size=talkers, replace=False)
    out = np.zeros(CLIP, dtype=np.float64)
    for d in digits:
        wave = utterance(speaker, WORDS[d], rng, realism).astype(np.float64)
        out += place(wave / np.sqrt(np.mean(wave**2)), rng)
    return out * np.sqrt(power / 10 ** (snr_db / 10) / np.mean(out**2))


def impulse_response(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: white noise under an exponential decay whose energy falls 60 dB in
    ``rt60_s`` seconds, ``rt60_s`` long, unit energy."""
    t = np.arange(max(1, round(rt60_s * SAMPLE_RATE))) / SAMPLE_RATE
    ir = rng.standard_normal(len(t)) * np.exp(-3.0 * np.log(10.0) * t / rt60_s)  # amplitude: -60 dB at rt60
    return ir / np.sqrt(np.sum(ir**2))


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``ir``, cut to ``x``'s length (the tail past the clip's end is lost)."""
    n = len(x) + len(ir) - 1
    return np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[: len(x)]


def band_limit(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """``x`` with every FFT bin outside [``low_hz``, ``high_hz``] zeroed (an ideal band-pass)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    return np.fft.irfft(spectrum, len(x))


def speak(
    speaker: Speaker,
    label: int,
    rng: np.random.Generator,
    realism: Realism = REALISM["default"],
    effects: np.random.SeedSequence | None = None,
    babbler: Speaker | None = None,
) -> np.ndarray:
    """A float32 :data:`CLIP`-sample clip: the digit's word in a random voice, shifted, noisy.

    In order: the word at a random offset, plus babble, reverberated, band-limited, plus white
    noise (see :class:`Realism`). ``rng`` draws the word and the white noise; ``effects`` (see
    :func:`effects_seed`) seeds the babble and the reverberation, and ``babbler`` speaks the
    babble: both are needed only when those are on.
    """
    wave = utterance(speaker, WORDS[label], rng, realism)
    clip = place(wave, rng)
    has_babble, has_reverb = realism.babble_talkers > 0, realism.rt60_s[1] > 0
    has_band = realism.band_hz != (0.0, NYQUIST)
    if has_babble or has_reverb or has_band:
        mixed = clip.astype(np.float64)
        if has_babble:
            if effects is None or babbler is None:
                raise ValueError("speak: babble needs the effects seed sequence and a second Speaker (babbler)")
            babble_rng = _effect_rng(effects, _BABBLE)
            snr = babble_rng.uniform(*realism.babble_snr_db)
            power = float(np.mean(wave.astype(np.float64) ** 2))
            mixed += babble(babbler, label, power, snr, realism.babble_talkers, babble_rng, realism)
        if has_reverb:
            if effects is None:
                raise ValueError("speak: reverberation needs the effects seed sequence")
            reverb_rng = _effect_rng(effects, _REVERB)
            rt60 = reverb_rng.uniform(*realism.rt60_s)
            if rt60 > 0:
                mixed = reverberate(mixed, impulse_response(rt60, reverb_rng))
        if has_band:
            mixed = band_limit(mixed, *realism.band_hz)
        clip = mixed.astype(np.float32)
    snr_db = rng.uniform(*realism.snr_db)
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


def effects_seed(seed: int, split_id: int, index: int) -> np.random.SeedSequence:
    """The seed of sample ``index``'s effects (babble, reverberation): a stream of its own."""
    return np.random.SeedSequence(seed, spawn_key=(split_id, _STREAM_EFFECTS, index))


def _effect_rng(effects: np.random.SeedSequence, effect: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(effects.entropy, spawn_key=(*effects.spawn_key, effect)))


def make_chunk(task: Task) -> dict[str, np.ndarray]:
    """Samples ``start..stop-1`` of a split; ``task = (seed, split_id, start, stop, workdir, realism)``."""
    seed, split_id, start, stop, workdir, realism = task
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
    with threadpool_limits(1), contextlib.ExitStack() as stack:
        speaker = stack.enter_context(Speaker(workdir))  # fresh Speakers: see module doc
        babbler = stack.enter_context(Speaker(workdir)) if realism.babble_talkers > 0 else None
        for k, label in enumerate(labels):
            rng = _sample_rng(seed, split_id, start + k)
            strokes = distort(glyphs[FONTS[rng.integers(len(FONTS))]][label], rng, realism.jitter, realism.affine)
            out["trajectory"][k] = resample_path(strokes, N_POINTS).ravel() / TRAJECTORY_SCALE
            out["image"][k] = render_image(strokes, rng.uniform(*realism.stroke_width))
            effects = effects_seed(seed, split_id, start + k)
            out["sound"][k] = sound_features(speak(speaker, int(label), rng, realism, effects, babbler))
    return out


def _tasks(seed: int, sizes: dict[str, int], workdir: str | None, realism: Realism) -> Iterator[tuple[str, Task]]:
    for split, n in sizes.items():
        for start in range(0, n, CHUNK):
            yield split, (seed, SPLIT_IDS[split], start, min(start + CHUNK, n), workdir, realism)


def build(
    seed: int,
    sizes: dict[str, int],
    workers: int = 1,
    progress: bool = True,
    workdir: str | None = None,
    realism: Realism = REALISM["default"],
) -> dict[str, dict[str, np.ndarray]]:
    """Generate each split of ``sizes`` (split -> number of samples) on ``workers`` processes.

    Returns split -> {"image": uint8 [N,28,28], "sound": float16 [N,32,128],
    "trajectory": float32 [N,200], "labels": int64 [N]}. ``workdir`` holds the short-lived
    library copies of :class:`~mmkeras_mhd.speech.Speaker` (default: the temp directory);
    ``realism``: see :class:`Realism`.
    """
    labelled = list(_tasks(seed, sizes, workdir, realism))
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

"""The ``mhd`` dataset: Multimodal Handwritten Digits, built locally from real signals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from mmkeras.plugin import CachedDataset, DataSplit, ModalityInfo

#: named sizes -> (train, test) samples; "full" is the GMC paper's 50,000 / 10,000
SIZES: dict[str, tuple[int, int]] = {
    "full": (50_000, 10_000),
    "small": (5_000, 1_000),
    "tiny": (200, 100),
}
#: what :meth:`MHD.load` yields, whatever the size and seed
MODALITIES: dict[str, ModalityInfo] = {
    "image": ModalityInfo((28, 28, 1), "float32", "the digit drawn MNIST-style from a Hershey font, in [0, 1]"),
    "sound": ModalityInfo((32, 128), "float32", "the spoken digit: 32 log-mel bands x 128 frames (1 s), standardised"),
    "trajectory": ModalityInfo((200,), "float32", "the pen path: 100 (x, y) points, interleaved, within about [-1, 1]"),
    "label": ModalityInfo((10,), "float32", "the digit, one-hot"),
}


def split_sizes(size: str | int) -> tuple[int, int]:
    """(train, test) samples of a named size or of an int N (N train, N // 5 test)."""
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    if isinstance(size, int) and not isinstance(size, bool) and size >= 5:
        return size, size // 5
    raise ValueError(
        f"MHD: size must be one of {list(SIZES)} or an int >= 5 (the number of training samples), got {size!r}"
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MHD(CachedDataset):
    """Multimodal Handwritten Digits (as in the GMC paper): four views of each digit 0-9.

    - ``image``: float32 [N, 28, 28, 1] in [0, 1], the digit drawn MNIST-style (white on black)
      from one of seven Hershey vector fonts under a random affine and elastic distortion;
    - ``trajectory``: float32 [N, 200], the same pen strokes as 100 (x, y) points evenly spaced
      along the inked path, interleaved x0, y0, x1, y1, ... with y up, within about [-1, 1];
    - ``sound``: float32 [N, 32, 128], the digit's word spoken by eSpeak NG (random accent,
      voice, rate, pitch, time offset and noise) as 32 log-mel bands x 128 frames (1.0 s),
      standardised per sample;
    - ``label``: float32 [N, 10] one-hot; ``labels`` are the int64 digits.

    ``realism`` names a preset of the signals' variability (see :class:`~mmkeras_mhd.generate.Realism`);
    each parameter after it overrides the preset's value when given (None: the preset's).
    ``"default"`` is MHD as before these parameters existed, byte for byte. ``"hard"`` makes the
    sound a telephone call from a noisy, reverberant room in which the digit's speaker stays the
    loudest voice: white noise at 5-15 dB SNR, two babbling talkers (other digits) together
    5-15 dB below the word, RT60 0.3-0.8 s, a 300-3400 Hz band, rate 100-280 words/min, pitch
    15-85 and intonation 10-90; image and trajectory stay as in ``"default"``.

    How ``"hard"`` was chosen (``python scripts/mhd_realism.py --grid``; the plugin README has the
    table): the grid white-noise SNR {10-30, 5-15, 0-10} dB x babble {none, 2 talkers at 5-15,
    at 0-10 dB} x RT60 {0, 0.3-0.8 s}, on top of the band and voice ranges above, scored by
    nearest-centroid accuracy on 1,000 train / 500 test samples. The issue asked for the point
    whose sound a nearest centroid gets right about as often as the image (0.88 there, 0.93 on
    2,000 / 1,000); no point comes near: the *default* sound already scores 0.43 (0.80 on its
    per-band mean and spread over time) and every point of the grid scores 0.16-0.40 (0.27-0.63).
    The preset is therefore the grid point fixed beforehand by a criterion that does not look at
    any classifier: every effect on, each background source 5-15 dB below the word (0.28 there;
    0.31 on 2,000 / 1,000, 0.42 pooled).

    Parameters:
        size: "full" (50,000 train / 10,000 test), "small" (5,000 / 1,000), "tiny" (200 / 100),
            or an int N for N train and N // 5 test samples.
        seed: generation seed; a seed gives byte-identical arrays whatever the worker count.
        data_dir: cache root (default ``$MMKERAS_DATA_DIR``, else ``~/.cache/mmkeras``);
            files go in ``<data_dir>/mhd/``.
        workers: processes building the data (default: all usable cores).
        realism: "default" or "hard", the preset the parameters below start from.
        snr_db: white noise's SNR range in dB, relative to the spoken word's power.
        babble_talkers: background voices saying other digits (0: none).
        babble_snr_db: the word's power over the babble's, range in dB.
        rt60_s: reverberation time range in seconds ((0, 0): none).
        band_hz: pass band (low, high) in Hz ((0, 11025): no band limiting).
        rate_wpm: speaking rate range, words per minute (80..450).
        pitch: eSpeak base pitch range (0..100).
        pitch_range: eSpeak intonation range (0..100).
        stroke_width: pen width range in pixels (image).
        jitter: pen jitter standard deviation in glyph units (image and trajectory).
        affine: scale of the random rotation, shear, scale and shift (image and trajectory; 0: none).
        test_size: test samples, overriding the size's (e.g. ``size: small, test_size: 10000``: train on
            5,000 and evaluate on the full size's 10,000 test samples, the same arrays).
    """

    splits = ("train", "test")
    cache_name = "mhd"

    def __init__(
        self,
        size: str | int = "full",
        seed: int = 0,
        data_dir: str | None = None,
        workers: int | None = None,
        realism: str = "default",
        snr_db: tuple[float, float] | None = None,
        babble_talkers: int | None = None,
        babble_snr_db: tuple[float, float] | None = None,
        rt60_s: tuple[float, float] | None = None,
        band_hz: tuple[float, float] | None = None,
        rate_wpm: tuple[int, int] | None = None,
        pitch: tuple[int, int] | None = None,
        pitch_range: tuple[int, int] | None = None,
        stroke_width: tuple[float, float] | None = None,
        jitter: float | None = None,
        affine: float | None = None,
        test_size: int | None = None,
    ) -> None:
        from mmkeras_mhd import generate  # numpy, Pillow, fonts; librosa loads lazily

        n_train, n_test = split_sizes(size)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"MHD: seed must be a non-negative int, got {seed!r}")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ValueError(f"MHD: data_dir must be a non-empty path string or None, got {data_dir!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"MHD: workers must be a positive int or None, got {workers!r}")
        if test_size is not None:
            if not isinstance(test_size, int) or isinstance(test_size, bool) or test_size < 1:
                raise ValueError(f"MHD: test_size must be a positive int or None, got {test_size!r}")
            n_test = test_size
        self.size = size
        self.seed = seed
        self.sizes = {"train": n_train, "test": n_test}
        self.workers = workers if workers is not None else _cpu_count()
        self.realism = generate.realism_from(
            realism,
            snr_db=snr_db,
            babble_talkers=babble_talkers,
            babble_snr_db=babble_snr_db,
            rt60_s=rt60_s,
            band_hz=band_hz,
            rate_wpm=rate_wpm,
            pitch=pitch,
            pitch_range=pitch_range,
            stroke_width=stroke_width,
            jitter=jitter,
            affine=affine,
        )
        self.set_cache_dir(data_dir)

    def info(self) -> dict[str, ModalityInfo]:
        return dict(MODALITIES)

    def label_info(self) -> str:
        return "int64 digit 0-9"

    def cache_version(self) -> int:
        from mmkeras_mhd import generate  # librosa, eSpeak: only when the data is read or built

        return generate.FORMAT_VERSION

    def cache_key(self, split: str) -> str:
        """``n<samples>_seed<seed>``, plus ``_<preset or "realism">-<digest>`` unless realism is the default."""
        from mmkeras_mhd import generate

        key = super().cache_key(split)
        return key if self.realism == generate.REALISM["default"] else f"{key}_{self.realism.key()}"

    def build(self, splits: list[str], progress: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        from mmkeras_mhd import generate

        sizes = {s: self.sizes[s] for s in splits}
        yield from generate.build(self.seed, sizes, self.workers, progress, str(self.cache_dir), self.realism).items()

    def decode(self, split: str, arrays: Any) -> DataSplit:
        labels = arrays["labels"].astype(np.int64)
        inputs = {
            "image": (arrays["image"].astype(np.float32) / 255.0)[..., None],
            "sound": arrays["sound"].astype(np.float32),
            "trajectory": arrays["trajectory"].astype(np.float32),
            "label": np.eye(10, dtype=np.float32)[labels],
        }
        return DataSplit(inputs, labels)

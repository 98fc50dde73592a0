"""Audio files (WAV, FLAC, OGG) -> fixed-length waveforms or spectral features.

:data:`read_audio` is registered for the core ``files`` dataset under the entry-point group
``mmkeras.readers`` (one entry per file extension). Decoding backends:

- ``tensorflow-io`` (extra ``[tfio]``): used by ``backend: auto`` when the package imports AND its
  ops load: tensorflow-io 0.37.1 imports on TensorFlow 2.21 but its shared library fails with an
  undefined symbol on first use, so :func:`tfio_status` decodes a tiny WAV to find out;
- ``soundfile`` (libsndfile): the fallback of ``auto``; WAV, FLAC and OGG;
- ``tf``: ``tf.audio.decode_wav``, 16-bit PCM WAV only, needing nothing beyond TensorFlow.

Every file is mixed down to mono, resampled to ``sample_rate`` (librosa, soxr), cut or
zero-padded to ``seconds``, then returned raw or as features (:mod:`mmkeras_audio.features`).
"""

from __future__ import annotations

import functools
import io
import tempfile
import threading
import warnings
import wave as wave_module
from collections import Counter
from pathlib import Path

import numpy as np

from mmkeras.plugin import Reader
from mmkeras_audio.features import FEATURE_BACKENDS, log_mel, mfcc, num_frames

BACKENDS = ("auto", "tensorflow-io", "soundfile", "tf")
_SOUNDFILE_LOCK = threading.Lock()
FEATURES = ("raw", "mfcc", "mel")


@functools.lru_cache(maxsize=1)
def tfio_status() -> tuple[bool, str]:
    """``(usable, detail)``: whether tensorflow-io decodes audio in this environment, and why not.

    Importing is not enough (its ops library is loaded lazily), so this decodes a tiny WAV.
    """
    try:
        with warnings.catch_warnings():  # its import warns about the same failure; the reason is returned
            warnings.simplefilter("ignore")
            import tensorflow_io as tfio
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "probe.wav"
            path.write_bytes(_tiny_wav())
            decoded = tfio.audio.AudioIOTensor(str(path)).to_tensor().numpy()
        if decoded.reshape(-1).tolist() != [0, 1000, -1000, 0]:
            return False, f"tensorflow-io decoded a probe WAV wrongly: {decoded.reshape(-1).tolist()}"
    except Exception as exc:  # noqa: BLE001  ImportError, or the undefined symbol of a TF it was not built for
        text = str(exc).strip()
        why = f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no details'}"
        if "undefined symbol" in text and "undefined symbol" not in why:
            why += " (caused by an undefined symbol: it was built for another TensorFlow)"
        return False, why
    return True, f"tensorflow-io {getattr(tfio, '__version__', '?')}"


def _tiny_wav() -> bytes:
    buf = io.BytesIO()
    with wave_module.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.array([0, 1000, -1000, 0], dtype="<i2").tobytes())
    return buf.getvalue()


def resolve_backend(backend: str = "auto") -> str:
    """The backend ``backend`` stands for here (``auto`` -> tensorflow-io if usable, else soundfile)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown audio backend {backend!r}; expected one of {list(BACKENDS)}")
    if backend == "auto":
        return "tensorflow-io" if tfio_status()[0] else "soundfile"
    if backend == "tensorflow-io" and not tfio_status()[0]:
        raise RuntimeError(
            f"audio backend tensorflow-io is not usable here ({tfio_status()[1]}); "
            "pip install 'mmkeras-audio[tfio]' with a TensorFlow it supports, or use backend: auto"
        )
    return backend


def decode(path: str, backend: str = "auto") -> tuple[np.ndarray, int, str]:
    """``(mono float32 waveform in [-1, 1], sample rate, backend used)`` of an audio file."""
    used = resolve_backend(backend)
    if used == "soundfile":
        import soundfile

        # libsndfile keeps its error state in process-wide globals (libsndfile issues #279 and #610), and
        # the files dataset reads rows in threads: one file at a time through it (decoding a WAV is fast;
        # resampling and features, below, still run in parallel). A CI run once crashed inside a threaded read.
        with _SOUNDFILE_LOCK:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    elif used == "tf":
        import tensorflow as tf

        audio, rate = tf.audio.decode_wav(tf.io.read_file(str(path)))
        data, rate = audio.numpy(), int(rate.numpy())
    else:
        import tensorflow_io as tfio

        tensor = tfio.audio.AudioIOTensor(str(path))
        data, rate = _to_float(tensor.to_tensor().numpy()), int(tensor.rate.numpy())
    if data.size == 0:
        raise ValueError("the file holds no audio samples")
    return data.reshape(len(data), -1).mean(axis=1).astype(np.float32), int(rate), used


def _to_float(x: np.ndarray) -> np.ndarray:
    """Integer PCM -> float in [-1, 1] (tensorflow-io returns the file's own sample type)."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(-np.iinfo(x.dtype).min)
    return x.astype(np.float32)


def resample(wave: np.ndarray, orig_rate: int, rate: int) -> np.ndarray:
    """``wave`` at ``rate`` Hz (band-limited, soxr through librosa)."""
    if orig_rate == rate:
        return wave
    import librosa

    return librosa.resample(wave, orig_sr=orig_rate, target_sr=rate, res_type="soxr_hq").astype(np.float32)


def fix_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut to ``length`` samples or zero-pad at the end."""
    return wave[:length] if len(wave) >= length else np.pad(wave, (0, length - len(wave)))


class AudioReader(Reader):
    """The ``mmkeras.readers`` reader for audio files; options come from the ``files`` dataset's
    ``audio`` parameter. ``backend`` is the decoding backend of the last file read and
    ``backends_used`` counts them all, so a run can tell which path it took."""

    kind = "audio"

    def __init__(self) -> None:
        self.backend: str | None = None  # None until a file is read
        self.backends_used: Counter[str] = Counter()
        self._lock = threading.Lock()

    def validate(
        self,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        features: str = "raw",
        n_features: int = 40,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        backend: str = "auto",
        features_backend: str = "librosa",
    ) -> None:
        """Raise ValueError naming the first bad option (called once, before any file is read)."""
        if features not in FEATURES:
            raise ValueError(f"features: {features!r} is not one of {list(FEATURES)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {list(BACKENDS)}")
        if features_backend not in FEATURE_BACKENDS:
            raise ValueError(f"features_backend: {features_backend!r} is not one of {list(FEATURE_BACKENDS)}")
        for name, value in (
            ("sample_rate", sample_rate),
            ("seconds", seconds),
            ("n_features", n_features),
            ("n_mels", n_mels),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
        ):
            if not value > 0:
                raise ValueError(f"{name}: must be positive, got {value}")
        if features == "mfcc" and n_features > n_mels:
            raise ValueError(f"n_features: {n_features} MFCCs need n_mels >= {n_features}, got n_mels={n_mels}")

    def shape(
        self,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        features: str = "raw",
        n_features: int = 40,
        n_fft: int = 512,
        hop_length: int = 160,
        **_: object,
    ) -> tuple[int, ...]:
        """What ``__call__`` returns for these options, known without reading a file (the files dataset's ``info``)."""
        samples = round(seconds * sample_rate)
        return (samples,) if features == "raw" else (n_features, num_frames(samples, n_fft, hop_length))

    def __call__(
        self,
        path: str,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        features: str = "raw",
        n_features: int = 40,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        backend: str = "auto",
        features_backend: str = "librosa",
    ) -> np.ndarray:
        """``[samples]`` for ``raw``, ``[n_features, frames]`` for ``mel`` and ``mfcc``."""
        wave, rate, used = decode(path, backend)
        with self._lock:
            self.backend = used
            self.backends_used[used] += 1
        wave = fix_length(resample(wave, rate, sample_rate), round(seconds * sample_rate))
        if features == "raw":
            return wave
        if features == "mel":
            return log_mel(wave, sample_rate, n_features, n_fft, hop_length, backend=features_backend)
        return mfcc(wave, sample_rate, n_features, n_mels, n_fft, hop_length, backend=features_backend)


#: the reader instance the entry points name
read_audio = AudioReader()

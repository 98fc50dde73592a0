"""Spectral features of a waveform: log-mel spectrograms and MFCCs, [features, frames].

Two backends compute the same definition:

- ``librosa`` (the default): numpy, for reading files ahead of training;
- ``tf``: ``tf.signal``, for in-graph use (e.g. in a ``tf.data`` map over raw audio read back
  from TFRecords).

Definition (both backends): frames of ``n_fft`` samples every ``hop_length`` samples, no
centring padding, a periodic Hann window; power spectrum |STFT|^2; HTK mel scale
(mel = 2595 log10(1 + f / 700)) with unnormalised triangular filters; ``log(mel + 1e-6)``.
MFCC = orthonormal DCT-II of that log-mel over the mel axis, first ``n_mfcc`` coefficients
(Davis & Mermelstein, 1980). The two backends differ only in how their triangular filters are
sampled (in Hz for librosa, in mel for tf.signal), so they agree closely, not bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np

FEATURE_BACKENDS = ("librosa", "tf")
LOG_FLOOR = 1e-6


def num_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
    """Frames in a waveform of ``num_samples`` (shorter ones are zero-padded to one frame)."""
    return 1 + max(0, num_samples - n_fft) // hop_length


def log_mel(
    wave: np.ndarray,
    sample_rate: int,
    n_mels: int = 64,
    n_fft: int = 512,
    hop_length: int = 160,
    fmin: float = 0.0,
    fmax: float | None = None,
    backend: str = "librosa",
) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform, float32 ``[n_mels, frames]``."""
    wave = _prepare(wave, n_fft)
    fmax = sample_rate / 2 if fmax is None else fmax
    if backend == "librosa":
        import librosa

        power = np.abs(librosa.stft(wave, n_fft=n_fft, hop_length=hop_length, center=False)) ** 2
        return np.log(_mel_basis(sample_rate, n_fft, n_mels, fmin, fmax) @ power + LOG_FLOOR).astype(np.float32)
    if backend == "tf":
        return np.asarray(_tf_log_mel(wave, sample_rate, n_mels, n_fft, hop_length, fmin, fmax)).T.astype(np.float32)
    raise ValueError(f"unknown features backend {backend!r}; expected one of {list(FEATURE_BACKENDS)}")


def mfcc(
    wave: np.ndarray,
    sample_rate: int,
    n_mfcc: int = 40,
    n_mels: int = 64,
    n_fft: int = 512,
    hop_length: int = 160,
    fmin: float = 0.0,
    fmax: float | None = None,
    backend: str = "librosa",
) -> np.ndarray:
    """MFCCs of a mono waveform, float32 ``[n_mfcc, frames]``."""
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc={n_mfcc} must not exceed n_mels={n_mels}")
    if backend == "librosa":
        import librosa

        spec = log_mel(wave, sample_rate, n_mels, n_fft, hop_length, fmin, fmax, "librosa")
        return librosa.feature.mfcc(S=spec, n_mfcc=n_mfcc, dct_type=2, norm="ortho").astype(np.float32)
    if backend == "tf":
        import tensorflow as tf

        fmax = sample_rate / 2 if fmax is None else fmax
        spec = _tf_log_mel(_prepare(wave, n_fft), sample_rate, n_mels, n_fft, hop_length, fmin, fmax)
        coeffs = tf.signal.mfccs_from_log_mel_spectrograms(spec)[:, :n_mfcc].numpy()
        coeffs[:, 0] /= np.sqrt(2.0)  # tf.signal scales c0 like the other terms; the orthonormal DCT-II does not
        return coeffs.T.astype(np.float32)
    raise ValueError(f"unknown features backend {backend!r}; expected one of {list(FEATURE_BACKENDS)}")


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's HTK triangular filters, made once per setting (the matmul below is BLAS, not einsum)."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None)


def _prepare(wave: np.ndarray, n_fft: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    return wave


def _tf_log_mel(wave, sample_rate, n_mels, n_fft, hop_length, fmin, fmax):
    """``[frames, n_mels]`` tensor (tf.signal's layout)."""
    import tensorflow as tf

    stft = tf.signal.stft(tf.constant(wave), frame_length=n_fft, frame_step=hop_length, fft_length=n_fft)
    power = tf.math.square(tf.abs(stft))
    weights = tf.signal.linear_to_mel_weight_matrix(n_mels, n_fft // 2 + 1, sample_rate, float(fmin), float(fmax))
    return tf.math.log(tf.matmul(power, weights) + LOG_FLOOR)

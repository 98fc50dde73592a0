"""Audio for mmkeras: a reader for WAV/FLAC/OGG files used by the core ``files`` dataset, and
log-mel / MFCC features (librosa or tf.signal)."""

from mmkeras_audio.features import log_mel, mfcc
from mmkeras_audio.readers import AudioReader, decode, read_audio, tfio_status

__all__ = ["AudioReader", "decode", "log_mel", "mfcc", "read_audio", "tfio_status"]

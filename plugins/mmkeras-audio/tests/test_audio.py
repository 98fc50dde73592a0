"""mmkeras-audio: decoding backends (tensorflow-io when usable, soundfile, tf.audio), resampling,
features (librosa and tf.signal agree) and the reader the files dataset discovers."""

import sys
import types
import wave

import numpy as np
import pytest
import soundfile
from mmkeras_audio import features, readers
from mmkeras_audio.readers import AudioReader, decode, read_audio, resolve_backend, tfio_status

import mmkeras
from mmkeras.plugin import Reader


def sine(freq, seconds, rate, amplitude=0.5):
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def write_wav(path, signal, rate, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(np.asarray(signal) * 32767).astype("<i2").tobytes())
    return np.round(np.asarray(signal) * 32767) / 32768  # what a decoder should return


@pytest.fixture
def no_tfio(monkeypatch):
    """tensorflow-io that imports but whose ops fail to load, as 0.37.1 does on TF 2.21."""

    class AudioIOTensor:
        def __init__(self, filename, dtype=None):
            raise RuntimeError("libtensorflow_io.so: undefined symbol: _ZN10tensorflow8internal")

    fake = types.SimpleNamespace(__version__="0.37.1", audio=types.SimpleNamespace(AudioIOTensor=AudioIOTensor))
    monkeypatch.setitem(sys.modules, "tensorflow_io", fake)
    tfio_status.cache_clear()
    yield
    tfio_status.cache_clear()


def test_broken_tfio_is_detected_and_soundfile_used(tmp_path, no_tfio):
    usable, why = tfio_status()
    assert not usable and why.startswith("RuntimeError: libtensorflow_io.so: undefined symbol")
    assert resolve_backend("auto") == "soundfile"
    with pytest.raises(RuntimeError, match=r"tensorflow-io is not usable here \(RuntimeError: .*undefined symbol"):
        resolve_backend("tensorflow-io")
    expected = write_wav(tmp_path / "a.wav", sine(440, 0.1, 8000), 8000)
    reader = AudioReader()
    out = reader(str(tmp_path / "a.wav"), sample_rate=8000, seconds=0.1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert reader.backend == "soundfile" and reader.backends_used == {"soundfile": 1}


def test_working_tfio_is_preferred_and_its_samples_scaled(tmp_path, monkeypatch):
    """The tensorflow-io code path, against a stand-in that behaves like AudioIOTensor (int16 samples)."""

    class Tensor:
        def __init__(self, value):
            self.value = value

        def numpy(self):
            return self.value

    class AudioIOTensor:
        def __init__(self, filename, dtype=None):
            data, rate = soundfile.read(filename, dtype="int16", always_2d=True)
            self.rate, self._data = Tensor(np.int64(rate)), data

        def to_tensor(self):
            return Tensor(self._data)

    fake = types.SimpleNamespace(__version__="test", audio=types.SimpleNamespace(AudioIOTensor=AudioIOTensor))
    monkeypatch.setitem(sys.modules, "tensorflow_io", fake)
    tfio_status.cache_clear()
    try:
        assert tfio_status() == (True, "tensorflow-io test")
        expected = write_wav(tmp_path / "a.wav", sine(300, 0.05, 8000), 8000)
        wave_, rate, used = decode(str(tmp_path / "a.wav"))
        assert (rate, used) == (8000, "tensorflow-io")
        np.testing.assert_allclose(wave_, expected, atol=1e-6)
    finally:
        tfio_status.cache_clear()


def test_real_tensorflow_io_matches_soundfile(tmp_path):
    usable, why = tfio_status()
    if not usable:
        pytest.skip(
            f"tensorflow-io is not usable here ({why}); install mmkeras-audio[tfio] on a TensorFlow it supports"
        )
    write_wav(tmp_path / "a.wav", sine(440, 0.1, 16000), 16000)
    soundfile.write(tmp_path / "a.flac", sine(330, 0.1, 16000), 16000, subtype="PCM_16")
    for name in ("a.wav", "a.flac"):
        ref, ref_rate, _ = decode(str(tmp_path / name), "soundfile")
        got, rate, used = decode(str(tmp_path / name), "tensorflow-io")
        assert used == "tensorflow-io" and rate == ref_rate
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_soundfile_and_tf_decode_the_same_samples(tmp_path, no_tfio):
    stereo = np.stack([sine(440, 0.05, 8000), sine(660, 0.05, 8000, 0.25)], axis=1)
    expected = write_wav(tmp_path / "s.wav", stereo.ravel(), 8000, channels=2).reshape(-1, 2).mean(axis=1)
    for backend in ("auto", "soundfile", "tf"):
        got, rate, used = decode(str(tmp_path / "s.wav"), backend)
        assert rate == 8000 and used == ("soundfile" if backend == "auto" else backend)
        np.testing.assert_allclose(got, expected, atol=1e-6)  # stereo mixed down to mono
    flac = sine(500, 0.05, 8000)
    soundfile.write(tmp_path / "a.flac", flac, 8000, subtype="PCM_16")
    np.testing.assert_allclose(decode(str(tmp_path / "a.flac"))[0], flac, atol=1 / 32768)


def test_resample_keeps_the_pitch_and_fix_length(tmp_path, no_tfio):
    write_wav(tmp_path / "a.wav", sine(440, 0.5, 16000), 16000)
    out = read_audio(str(tmp_path / "a.wav"), sample_rate=8000, seconds=1.0)
    assert out.shape == (8000,) and not out[4000:].any()  # zero-padded to one second
    spectrum = np.abs(np.fft.rfft(out[:4000]))
    assert np.fft.rfftfreq(4000, 1 / 8000)[spectrum.argmax()] == pytest.approx(440, abs=2)
    assert read_audio(str(tmp_path / "a.wav"), sample_rate=16000, seconds=0.25).shape == (4000,)  # cut


def test_librosa_and_tf_features_agree():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    chirp = (0.5 * np.sin(2 * np.pi * (300 + 1500 * t) * t) + 0.05 * rng.normal(size=16000)).astype("float32")
    a, b = features.log_mel(chirp, 16000), features.log_mel(chirp, 16000, backend="tf")
    frames = features.num_frames(16000, 512, 160)
    assert a.shape == b.shape == (64, frames) == (64, 97)
    np.testing.assert_allclose(a, b, atol=0.05)
    a, b = features.mfcc(chirp, 16000, n_mfcc=20), features.mfcc(chirp, 16000, n_mfcc=20, backend="tf")
    assert a.shape == (20, 97)
    np.testing.assert_allclose(a, b, atol=0.05)
    # a 1 kHz tone peaks in the mel band centred nearest 1 kHz (HTK mel scale)
    mel = features.log_mel(sine(1000, 0.5, 16000), 16000, n_mels=40)
    edges = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 42) / 2595) - 1)
    assert mel.mean(axis=1).argmax() == np.abs(edges[1:-1] - 1000).argmin()
    with pytest.raises(ValueError, match="n_mfcc=70 must not exceed n_mels=64"):
        features.mfcc(chirp, 16000, n_mfcc=70)


def test_reader_options_are_checked():
    with pytest.raises(ValueError, match=r"features: 'spectrum' is not one of \['raw', 'mfcc', 'mel'\]"):
        read_audio.validate(features="spectrum")
    with pytest.raises(ValueError, match=r"n_features: 80 MFCCs need n_mels >= 80"):
        read_audio.validate(features="mfcc", n_features=80)
    with pytest.raises(ValueError, match=r"unknown audio backend 'ffmpeg'"):
        resolve_backend("ffmpeg")
    assert readers.BACKENDS == ("auto", "tensorflow-io", "soundfile", "tf")


def test_files_dataset_finds_the_reader_by_extension(tmp_path, no_tfio):
    assert (
        mmkeras.registry.get("readers", "wav") is read_audio and mmkeras.registry.get("readers", "flac") is read_audio
    )
    assert isinstance(read_audio, Reader) and read_audio.kind == "audio"
    assert read_audio.shape(sample_rate=8000, seconds=0.5) == (4000,)
    frames = 1 + (16000 - 512) // 160  # one second at 16 kHz
    assert read_audio.shape(features="mel", n_features=32, n_fft=512, hop_length=160) == (32, frames)
    write_wav(tmp_path / "a.wav", sine(440, 0.3, 16000), 16000)
    soundfile.write(tmp_path / "b.flac", sine(880, 0.3, 22050), 22050, subtype="PCM_16")
    (tmp_path / "m.csv").write_text("voice,label\na.wav,0\nb.flac,1\n,1\n")
    data = mmkeras.load_dataset(
        "files",
        manifest=str(tmp_path / "m.csv"),
        label="label",
        audio={"sample_rate": 16000, "seconds": 0.25, "features": "mel", "n_features": 32},
    )
    split = data.load("train")
    assert split.inputs["voice"].shape == (3, 32, features.num_frames(4000, 512, 160))
    np.testing.assert_array_equal(split.mask("voice"), [1, 1, 0])
    assert not split.inputs["voice"][2].any() and data.backends == {"voice": "soundfile"}
    # the 880 Hz file (resampled from 22.05 kHz) is brightest in a higher mel band than the 440 Hz one
    bands = split.inputs["voice"][:2].mean(axis=2).argmax(axis=1)
    assert bands[1] > bands[0]

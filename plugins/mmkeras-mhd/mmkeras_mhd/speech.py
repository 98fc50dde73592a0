"""Spoken digits from eSpeak NG, driven through ctypes.

The ``espeakng-loader`` wheel ships ``libespeak-ng`` and its voice data, so nothing has to be
installed system-wide. libespeak-ng keeps hidden state between utterances (a static pitch
flutter phase, noise and echo state), so the same request gives different samples depending on
what was said before, even in a re-initialised library. :class:`Speaker` therefore loads a
*private* copy of the library: a fresh ``Speaker`` always starts from the same state, and
with :meth:`Speaker.say`'s ``noise_seed`` the waveforms it produces depend only on the
sequence of requests made to it.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
from types import TracebackType
from typing import TYPE_CHECKING

import espeakng_loader
import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

SAMPLE_RATE = 22050

#: English accents of the bundled data (identifiers accepted by ``espeak_SetVoiceByName``).
ACCENTS: tuple[str, ...] = (
    "en",
    "en-us",
    "en-us-nyc",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
#: voice variants (``voices/!v``): formant-synthesiser men and women, and Klatt synthesisers.
VARIANTS: tuple[str, ...] = (
    "",
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
)  # fmt: skip

# espeak_AUDIO_OUTPUT / espeak_POSITION_TYPE / espeak_PARAMETER values from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def voice_name(accent: str, variant: str) -> str:
    """The ``espeak_SetVoiceByName`` identifier of an accent with a variant ("en-us+f3")."""
    return f"{accent}+{variant}" if variant else accent


class Speaker:
    """A private, freshly initialised instance of libespeak-ng (use as a context manager).

    ``workdir`` receives a short-lived copy of the shared library: the dynamic loader only
    gives fresh static state to a file it has not loaded yet.
    """

    def __init__(self, workdir: str | None = None) -> None:
        original = espeakng_loader.get_library_path()
        fd, copy = tempfile.mkstemp(prefix="libespeak-ng-", suffix=os.path.splitext(original)[1], dir=workdir)
        os.close(fd)
        try:
            shutil.copyfile(original, copy)
            self._lib = ctypes.CDLL(copy, mode=os.RTLD_LOCAL)
        finally:
            os.unlink(copy)  # the mapping keeps the loaded code alive
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate != SAMPLE_RATE:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed or runs at {rate} Hz, not {SAMPLE_RATE}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced while the library holds it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer, n: int, _events: int | None) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = carry on synthesising

    def say(
        self,
        text: str,
        voice: str = "en",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        noise_seed: int = 0,
    ) -> np.ndarray:
        """Speak ``text``; int16 samples at :data:`SAMPLE_RATE` Hz.

        rate: words per minute (80..450); pitch and pitch_range: 0..100 (50 is the voice's own).
        noise_seed: seeds the synthesiser's noise (breath, fricatives) for reproducibility.
        """
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        lib.espeak_ng_SetRandSeed(int(noise_seed))
        self._chunks = []
        buf = text.encode("utf-8") + b"\0"
        status = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        """Release the instance (idempotent)."""
        lib = getattr(self, "_lib", None)
        if lib is not None:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)
            self._lib = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

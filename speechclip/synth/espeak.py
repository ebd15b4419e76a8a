"""espeak-ng through ctypes, run as a small synthesis server so every utterance starts from the same state.

Introduced in notebooks/00_setup_and_data.ipynb. espeak-ng keeps waveform state (pitch phase, flutter, noise) in
globals that even espeak_Terminate does not reset, so the same text comes out a few milliseconds different each
time. The server loads and initialises the library once and forks a child per request: every child starts from the
same never-used state, which makes the audio a pure function of (text, voice, parameters). Run as a script, it
imports nothing heavier than ctypes, so a fork costs about a millisecond. Standard library only, on purpose.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import re
import struct
import sys
from pathlib import Path

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 1
CHARS_UTF8, POS_CHARACTER = 1, 1
PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}  # espeak_PARAMETER values
EVENT_KINDS = {1: "word", 5: "end", 7: "phoneme"}  # the espeak_EVENT_TYPE values we keep


class Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h; `id` is a union of int, char* and char[8] (phoneme names)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


def load_library() -> tuple[ctypes.CDLL, str | None]:
    """The pip-installed espeak-ng (espeakng-loader) with its data, else the system library with its own data."""
    try:
        import espeakng_loader
        return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path()
    except (ImportError, OSError):
        name = ctypes.util.find_library("espeak-ng")
        if name is None:
            raise OSError("no espeak-ng library: pip install espeakng-loader, or apt-get install espeak-ng") from None
        return ctypes.CDLL(name), None


class Espeak:
    """One initialised espeak-ng in synchronous mode; synth() returns PCM16 bytes, events and phoneme counts."""

    def __init__(self):
        self.lib, self.data_path = load_library()
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        path = self.data_path.encode() if self.data_path else None
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise OSError(f"espeak_Initialize failed (data path {self.data_path})")
        self._callback = CALLBACK(self._collect)  # keep a reference: espeak holds only the raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._chunks: list[bytes] = []
        self._events: list[tuple] = []

    def _collect(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        k = 0
        while events[k].type != 0:
            e, kind = events[k], EVENT_KINDS.get(events[k].type)
            if kind:
                name = e.id.decode("utf-8", "replace") if kind == "phoneme" else ""
                self._events.append((kind, e.text_position, e.audio_position, name))
            k += 1
        return 0

    def set_voice(self, voice: str, params: dict) -> None:
        """Select "<language>+<variant>" and set rate, volume, pitch and range."""
        variant = voice.partition("+")[2]
        # espeak silently ignores an unknown variant; fail loudly instead
        if self.data_path and variant and not (Path(self.data_path) / "voices" / "!v" / variant).exists():
            raise ValueError(f"unknown espeak-ng variant {variant!r} in voice {voice!r}")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for key, value in params.items():
            self.lib.espeak_SetParameter(PARAMETERS[key], int(value), 0)

    def phoneme_count(self, word: str) -> int:
        """Phonemes in `word` said alone by the current voice (to split words espeak runs together)."""
        text = ctypes.c_char_p(word.encode("utf-8"))
        phonemes = self.lib.espeak_TextToPhonemes(ctypes.byref(text), CHARS_UTF8, ord("|") << 8)
        return len((phonemes or b"").strip().split(b"|"))

    def seed(self, seed: int) -> None:
        """Seed the noise generators, which espeak_Initialize seeds from the clock."""
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        libc = ctypes.CDLL(ctypes.util.find_library("c"))  # older espeak-ng versions draw from libc's rand()
        libc.srand(ctypes.c_uint(seed))

    def synth(self, text: str, voice: str, params: dict, seed: int = 0) -> tuple[bytes, list[tuple], dict[str, int]]:
        """PCM16 audio at self.sample_rate, (kind, text_position, ms, phoneme) events, phonemes per word."""
        self.seed(seed)
        self.set_voice(voice, params)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0 or not self._chunks:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r}")
        counts = {w: self.phoneme_count(w) for w in set(re.findall(r"[A-Za-z]+", text.lower()))}
        return b"".join(self._chunks), self._events, counts


def send(fd: int, obj) -> None:
    """Write one length-prefixed pickle to a file descriptor."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int):
    """Read one length-prefixed pickle; None at end of file."""
    def exactly(n: int) -> bytes | None:
        parts, left = [], n
        while left:
            part = os.read(fd, left)
            if not part:
                return None
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    header = exactly(8)
    return None if header is None else pickle.loads(exactly(struct.unpack("<Q", header)[0]))


def _answer(engine: Espeak, request: tuple) -> None:
    try:
        reply = ("ok", engine.synth(*request))
    except Exception as error:  # the client re-raises it with the request in view
        reply = ("error", f"{type(error).__name__}: {error}")
    send(1, reply)


def serve() -> None:
    """Answer (text, voice, params, seed) requests on stdin, each in a fresh fork of the untouched engine."""
    try:
        engine = Espeak()
    except OSError as error:
        send(1, ("error", str(error)))
        return
    send(1, ("ready", engine.sample_rate))
    while (request := receive(0)) is not None:
        if not hasattr(os, "fork"):  # no fork here: answers stay correct, only the few-ms repeatability is lost
            _answer(engine, request)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                _answer(engine, request)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            send(1, ("error", f"espeak-ng child died with status {status} on {request[0]!r}"))


if __name__ == "__main__":
    sys.exit(serve())

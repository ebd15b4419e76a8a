"""Speakers and text-to-speech: espeak-ng audio at 16 kHz with exact word times.

Introduced in notebooks/00_setup_and_data.ipynb. Synthesis runs in a small espeak-ng server process
(speechclip/synth/espeak.py) so that the same caption and speaker always give the same samples; word times come
from espeak-ng's own word and phoneme events (speechclip/synth/alignment.py).
"""
from __future__ import annotations

import atexit
import functools
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechclip.synth import espeak
from speechclip.synth.alignment import word_times

SAMPLE_RATE = 16000
_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
# espeak-ng's voice variants (timbre, formants, breathiness, synthesiser). Training speakers draw from these; the
# held-out speakers use eight others (and their near copies, AnxiousAndy, edward2, steph2/3, are left out too).
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
             "klatt4", "klatt5", "klatt6", "Alex", "Alicia", "Andrea", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
             "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "RicishayMax", "Storm", "adam",
             "anika", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
             "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "marcelo", "max", "michel", "miguel",
             "mike2", "norbert", "pablo", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "travis", "victor",
             "zac", "grandma", "grandpa")
N_TRAINING_SPEAKERS = 180  # about as many as Flickr8k Audio Captions has (183)


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an espeak-ng voice+variant and its prosody settings."""

    name: str
    voice: str  # "<language>+<variant>", e.g. "en-us+m3"
    rate: int  # words per minute
    pitch: int  # 0-100, espeak's default 50
    range: int  # pitch range 0-100: low is monotone
    volume: int = 100

    def params(self) -> dict:
        return {"rate": self.rate, "volume": self.volume, "pitch": self.pitch, "range": self.range}


def _speaker_pool(n: int = N_TRAINING_SPEAKERS) -> tuple[Speaker, ...]:
    # Many voices, as a real corpus has: with only a few dozen, the pocket HuBERT and the branches learned the
    # training voices rather than the words, and test speech from new voices fell to a third of the seen-voice
    # recall (benchmarks/README.md, "Training voices"). A fixed generator keeps the pool identical everywhere.
    rng = np.random.default_rng(20221002)
    variants = rng.permutation(np.resize(np.arange(len(_VARIANTS)), n))  # every variant speaks, about equally
    return tuple(Speaker(f"spk{i:03d}", f"{_ACCENTS[i % len(_ACCENTS)]}+{_VARIANTS[v]}",
                         rate=int(rng.integers(120, 241)), pitch=int(rng.integers(20, 91)),
                         range=int(rng.integers(20, 91)), volume=int(rng.integers(80, 116)))
                 for i, v in enumerate(variants))


SPEAKERS = _speaker_pool()  # speak the train and dev splits (and the test split's seen_voices/ copy)


def _held_out_pool() -> tuple[Speaker, ...]:
    # accents and voice variants that no training speaker uses, so the test split is spoken by voices the models
    # never heard; their rate and pitch lie at the edges of the training speakers' span (120-240 wpm, pitch 20-90),
    # as a new person's voice is new in timbre and accent, not outside the human range
    accents = ("en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    variants = ("Andy", "Annie", "Denis", "linda", "edward", "steph", "paul", "m8")
    return tuple(Speaker(f"new{i:02d}", f"{accents[i % 4]}+{variants[i]}", rate=(125, 220)[i % 2] + 3 * i,
                         pitch=(22, 80)[(i // 2) % 2] + i, range=25 + 9 * i, volume=90 + 2 * i) for i in range(8))


HELD_OUT_SPEAKERS = _held_out_pool()  # speak the test split only


@dataclass
class Utterance:
    """A synthesised caption: 16 kHz PCM16 samples and (word, start_s, end_s) per spoken word."""

    wav: np.ndarray
    words: list[tuple[str, float, float]]
    sample_rate: int = SAMPLE_RATE


class EspeakServer:
    """Client of one espeak.py server process: (text, speaker) -> raw 22,050 Hz audio, events, phoneme counts."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, espeak.__file__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        reply = espeak.receive(self.process.stdout.fileno())
        if not reply or reply[0] != "ready":
            self.close()
            raise OSError(reply[1] if reply else "the espeak-ng server did not start")
        self.sample_rate = reply[1]
        atexit.register(self.close)

    def synth(self, text: str, speaker: Speaker, seed: int = 0) -> tuple[np.ndarray, list[tuple], dict[str, int]]:
        espeak.send(self.process.stdin.fileno(), (text, speaker.voice, speaker.params(), seed))
        reply = espeak.receive(self.process.stdout.fileno())
        if reply is None or reply[0] != "ok":
            raise RuntimeError(f"espeak-ng failed on {text!r} as {speaker.name}: {reply and reply[1]}")
        audio, events, counts = reply[1]
        return np.frombuffer(audio, dtype=np.int16), events, counts

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)


class EspeakBinary:
    """Fallback through the espeak-ng program; it reports no events, so word times are only estimated."""

    sample_rate = 22050

    def synth(self, text: str, speaker: Speaker, seed: int = 0) -> tuple[np.ndarray, list[tuple], dict[str, int]]:
        args = ["espeak-ng", "--stdout", "-v", speaker.voice, "-s", str(speaker.rate), "-p", str(speaker.pitch),
                "-a", str(speaker.volume), text]
        audio, self.sample_rate = sf.read(io.BytesIO(subprocess.run(args, capture_output=True, check=True).stdout),
                                          dtype="int16")
        return audio, proportional_events(text, audio, self.sample_rate), {}


def proportional_events(text: str, audio: np.ndarray, rate: int) -> list[tuple]:
    """Word starts spread over the voiced span in proportion to word length (binary fallback only)."""
    level = np.abs(audio.astype(np.float32))
    voiced = np.flatnonzero(level > 0.02 * max(1.0, float(level.max())))
    first, last = (voiced[0], voiced[-1]) if len(voiced) else (0, len(audio))
    spans = [(m.start(), len(m.group())) for m in re.finditer(r"[A-Za-z]+", text)]
    shares = np.cumsum([0] + [n + 1 for _, n in spans]) / (sum(n + 1 for _, n in spans) or 1)
    ms = 1000 * (first + (last - first) * shares) / rate
    return [("word", s + 1, int(t), "") for (s, _), t in zip(spans, ms)] + [("end", 0, int(ms[-1]), "")]


_ENGINE: tuple[int, object] | None = None


def engine():
    """This process's espeak-ng (started on first use; a forked child starts its own)."""
    global _ENGINE
    if _ENGINE is None or _ENGINE[0] != os.getpid():
        try:
            _ENGINE = (os.getpid(), EspeakServer())
        except OSError as error:
            if shutil.which("espeak-ng") is None:
                raise RuntimeError(f"espeak-ng not found ({error}): `pip install espeakng-loader` (preferred) "
                                   "or `apt-get install espeak-ng`") from None
            _ENGINE = (os.getpid(), EspeakBinary())
    return _ENGINE[1]


@functools.lru_cache(maxsize=2)
def _resampler(rate: int) -> torchaudio.transforms.Resample:
    # functional.resample with its sinc kernel built once: rebuilding it per caption cost more than synthesis
    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)


def synthesize(text: str, speaker: Speaker, rng: np.random.Generator | None = None) -> Utterance:
    """Speak `text` as `speaker`: 16 kHz PCM16 with 0.15-0.45 s of faint noise before and after, and word times."""
    rng = rng if rng is not None else np.random.default_rng(0)
    tts = engine()
    raw, events, counts = tts.synth(text, speaker, seed=int(rng.integers(2**31)))
    words = word_times(text, raw, tts.sample_rate, events, lambda w: counts.get(w, 1))
    speech = _resampler(tts.sample_rate)(torch.from_numpy(raw.astype(np.float32) / 32768))
    lead, tail = (int(rng.uniform(0.15, 0.45) * SAMPLE_RATE) for _ in range(2))
    wav = np.concatenate([np.zeros(lead, np.float32), speech.numpy(), np.zeros(tail, np.float32)])
    wav += rng.normal(0, 10 ** (-70 / 20), len(wav)).astype(np.float32)  # a -70 dBFS floor: no digital silence
    pcm = np.clip(np.round(wav * 32767), -32768, 32767).astype(np.int16)
    shift = lead / SAMPLE_RATE
    return Utterance(pcm, [(w, round(float(s) + shift, 3), round(float(e) + shift, 3)) for w, s, e in words])

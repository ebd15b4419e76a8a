"""Checks of audio files that a decoder passes silently: a cut-short WAV and NaN/inf samples.

libsndfile reads a WAV whose data chunk is shorter than its header declares (a cut download) as a shorter,
valid file, so the header's own byte count is compared with the file size. PCM samples are always finite;
only float WAVs are decoded to look for NaN/inf, which keeps validation to header reads for the real corpora.
Introduced in notebooks/00_setup_and_data.ipynb (§1.2).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_OPEN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the data size open: nothing to compare


def wav_shortfall(path: Path) -> int:
    """Bytes the RIFF data chunk declares beyond the end of the file; 0 when complete or not a RIFF WAV."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return 0
        order, pos = ("<" if head[:4] == b"RIFF" else ">"), 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = f.read(4), struct.unpack(order + "I", f.read(4))[0]
            if chunk == b"data":
                return 0 if length in _OPEN_SIZES else max(0, pos + 8 + length - size)
            pos += 8 + length + (length & 1)  # chunks are padded to an even size
    return 0


def has_nonfinite_samples(path: Path, subtype: str) -> bool:
    """True when a float WAV holds NaN or inf samples (decoded in blocks; PCM files are skipped)."""
    if subtype not in FLOAT_SUBTYPES:
        return False
    return any(not np.isfinite(block).all() for block in sf.blocks(str(path), blocksize=1 << 16, dtype="float32"))


def audio_content_problem(path: Path, subtype: str) -> str | None:
    """"truncated audio", "corrupt audio" (non-finite samples) or None, for a wav whose header reads."""
    if wav_shortfall(path):
        return "truncated audio"
    if has_nonfinite_samples(path, subtype):
        return "corrupt audio"
    return None

"""Why a corpus file cannot be used: the reasons the datasets raise or count (keys of corpora._FIX).

Cheap checks (the index, existence, size) run at construction; header reads and image decoding in validate().
libsndfile reads a WAV whose data chunk is shorter than its header declares (a cut download) as a shorter,
valid file, so the header's own byte count is compared with the file size. PCM samples are always finite;
only float WAVs are decoded to look for NaN/inf, which keeps validation to header reads for the real corpora.
Introduced in notebooks/00_setup_and_data.ipynb (§1.2).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from speechclip.corpora import Utterance

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


def cheap_problem(u: Utterance, audio: bool, images: bool) -> str | None:
    """Index problems, existence and size checks only: cheap enough for 40k files at construction."""
    if u.problem:
        return u.problem
    if u.caption is None:
        return "audio without caption"
    if u.image_id < 0:  # not in Images/: even audio-only use needs a true image id for retrieval
        return "missing image"
    for wanted, path, kind in ((audio, u.wav_path, "audio"), (images, u.image_path, "image")):
        if not wanted:
            continue
        if path is None or not path.exists():
            return f"missing {kind}"
        if not path.is_file() or not os.access(path, os.R_OK):
            return f"unreadable {kind}"
        if path.stat().st_size == 0:
            return f"empty {kind}"
    return None


def audio_problem(path: Path, rate: int | None) -> tuple[str | None, tuple[int, int] | None]:
    """Read one wav header (and a float wav's samples): (reason or None, (frames, sample_rate))."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError):  # sf.LibsndfileError subclasses RuntimeError
        return "corrupt audio", None
    if info.frames == 0:
        return "empty audio", None
    if rate is not None and info.samplerate != rate:
        return "wrong sample rate", None
    content = audio_content_problem(path, info.subtype)
    return (content, None) if content else (None, (info.frames, info.samplerate))


def decode_image_problem(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))  # JPEG DCT scaling: still reads every byte (so truncation shows), decodes faster
            im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return "corrupt image"
    return None


def image_problem(u: Utterance) -> str:
    """Why an image that failed to load did: missing, unreadable, empty, else corrupt."""
    return cheap_problem(u, False, True) or decode_image_problem(u.image_path) or "corrupt image"

"""Word alignments: reading CTM files and keeping them consistent with a cropped waveform.

Introduced in notebooks/00_setup_and_data.ipynb (spectrogram with word boundaries).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

Alignment = list[tuple[str, float, float]]  # (word, start_s, end_s), sorted by start

# Real Flickr8k CTMs name utterances "<image>.jpg_#<n>" or "<image>.jpg#<n>"; the wav files say "<image>_<n>".
_FLICKR_UID = re.compile(r"^(?P<image>.+?)\.jpg_?#(?P<n>\d+)$")


def normalize_uid(uid: str) -> str:
    """Map any Flickr-style utterance name onto the wav stem "<image>_<n>" used everywhere else."""
    m = _FLICKR_UID.match(uid)
    return f"{m['image']}_{m['n']}" if m else uid


def _is_marker(word: str) -> bool:
    # "<sil>", "<unk>", "[noise]": aligner bookkeeping, not words a listener hears
    return (word.startswith("<") and word.endswith(">")) or (word.startswith("[") and word.endswith("]"))


class Alignments(dict):
    """{uid: Alignment} of one CTM file, remembering for each utterance where its last word ends (s, line)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.last_end = path, {}


# CTM times are rounded to 10 ms by aligners; past that an alignment that ends after its audio belongs elsewhere.
OVERRUN_SLACK_S = 0.1


def read_ctm(path: str | Path) -> Alignments:
    """Read a CTM ("<uid> <channel> <start_s> <dur_s> <word>") into {uid: [(word, start_s, end_s), ...]}."""
    from speechclip.corpora import CorpusError, read_text  # the one error type for bad corpus files

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: alignment file not found. Pass the CTM that came with the corpus, "
                          "or ctm_path=None to load no alignments.")
    out = Alignments(path)
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        fields = line.split()
        if not fields or line.startswith(";;"):
            continue
        try:
            uid, _channel, start, dur, word = fields[:5]
            start_s, dur_s = float(start), float(dur)
        except ValueError:
            raise CorpusError(f"{path}:{lineno}: expected '<uid> <channel> <start_s> <dur_s> <word>', "
                              f"got {line.strip()!r}. Fix or delete that line.") from None
        if not (math.isfinite(start_s) and math.isfinite(dur_s) and start_s >= 0 and dur_s >= 0):
            raise CorpusError(f"{path}:{lineno}: start {start!r} and duration {dur!r} must be finite and >= 0. "
                              "Fix or delete that line.")
        if not _is_marker(word):
            uid = normalize_uid(uid)
            out.setdefault(uid, []).append((word, start_s, start_s + dur_s))
            if start_s + dur_s > out.last_end.get(uid, (-1.0, 0))[0]:
                out.last_end[uid] = (start_s + dur_s, lineno)
    for words in out.values():
        words.sort(key=lambda w: w[1])
    return out


def alignment_overrun(alignments, uid: str, seconds: float) -> str | None:
    """"<ctm>:<line>" of an utterance's last word when it ends past its audio (seconds long), else None."""
    end = getattr(alignments, "last_end", {}).get(uid)
    if end is None or end[0] <= seconds + OVERRUN_SLACK_S:
        return None
    return f"{alignments.path}:{end[1]} (word ends at {end[0]:.2f} s, the audio at {seconds:.2f} s)"


def crop_alignment(alignment: Alignment | None, offset_s: float, length_s: float) -> Alignment | None:
    """Shift an alignment into a crop [offset_s, offset_s + length_s); words cut by the edges are clipped."""
    if alignment is None:
        return None
    kept = []
    for word, start, end in alignment:
        start, end = max(start - offset_s, 0.0), min(end - offset_s, length_s)
        if end > start:  # a word wholly outside the window has no audio left
            kept.append((word, start, end))
    return kept

"""Word start and end times from espeak-ng's synthesis events: the synthetic corpus's exact forced alignment.

Introduced in notebooks/00_setup_and_data.ipynb. Events are (kind, text_position, ms, phoneme name) with kind
"word" (a word starts), "phoneme" (names starting "_" are pauses) or "end"; text positions count from 1.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

_SILENCE = 0.02  # a 5 ms frame below 2% of the utterance's peak amplitude counts as silence


def spoken_words(text: str) -> list[tuple[str, int]]:
    """(lowercase word, 1-based character position) for each word of `text`, punctuation dropped."""
    return [(m.group().lower(), m.start() + 1) for m in re.finditer(r"[A-Za-z]+", text)]


def _split_group(members: list[int], words, start_ms: float, phonemes: list[float],
                 phoneme_count: Callable[[str], int]) -> dict[int, float]:
    # espeak speaks "of a", "on the" as one word; later words keep their own phoneme counts, the first the rest
    cuts, cut = [], len(phonemes)
    for k in reversed(members[1:]):
        cut -= phoneme_count(words[k][0])
        cuts.insert(0, cut)
    if cuts and cuts[0] < 1:  # counts disagree with what was spoken: share the phonemes out evenly instead
        cuts = [round(len(phonemes) * i / len(members)) for i in range(1, len(members))]
    if len(phonemes) < len(members) or len(set(cuts)) < len(cuts):
        raise RuntimeError(f"cannot split merged words {[words[k][0] for k in members]}")
    return {members[0]: start_ms, **{k: phonemes[c] for k, c in zip(members[1:], cuts)}}


def word_starts(words, events, phoneme_count: Callable[[str], int]) -> list[float]:
    """Start of every word in seconds, splitting words that espeak merged at a phoneme boundary."""
    word_ms = {pos: ms for kind, pos, ms, _ in events if kind == "word"}
    owners = sorted(word_ms)
    groups: dict[int, list[int]] = {}
    for k, (word, pos) in enumerate(words):
        owner = max((p for p in owners if p <= pos), default=None)
        if owner is None:
            raise RuntimeError(f"espeak-ng gave no word event for {word!r}")
        groups.setdefault(owner, []).append(k)
    starts: dict[int, float] = {}
    for owner, members in groups.items():
        phonemes = [ms for kind, pos, ms, name in events
                    if kind == "phoneme" and pos == owner and not name.startswith("_")]
        starts.update(_split_group(members, words, word_ms[owner], phonemes, phoneme_count)
                      if len(members) > 1 else {members[0]: word_ms[owner]})
    return [starts[k] / 1000 for k in range(len(words))]


def trim_end(audio: np.ndarray, rate: int, start_s: float, end_s: float) -> float:
    """Move `end_s` back over trailing silent frames (a stop's closure before a pause, espeak's final silence)."""
    hop = rate // 200
    segment = audio[int(start_s * rate):int(end_s * rate)].astype(np.float32)
    frames = segment[: len(segment) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(1)) > _SILENCE * float(np.abs(audio).max()))
    if len(loud) == 0 or loud[-1] == len(frames) - 1:  # sounding up to the end: keep the event's own boundary
        return end_s
    return start_s + (loud[-1] + 1) * hop / rate


def word_times(text: str, audio: np.ndarray, rate: int, events: list[tuple],
               phoneme_count: Callable[[str], int]) -> list[tuple[str, float, float]]:
    """(word, start_s, end_s) per word: a word ends at the next word's start or at the first pause before it."""
    words = spoken_words(text)
    starts = word_starts(words, events, phoneme_count)
    pauses = sorted(ms / 1000 for kind, _, ms, name in events if kind == "phoneme" and name.startswith("_"))
    out = []
    for k, (word, _) in enumerate(words):
        limit = starts[k + 1] if k + 1 < len(words) else len(audio) / rate
        end = min([p for p in pauses if starts[k] < p <= limit], default=limit)
        out.append((word, starts[k], max(trim_end(audio, rate, starts[k], end), starts[k] + 0.01)))
    return out

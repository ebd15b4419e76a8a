"""Reading corpus indexes: Flickr8k's caption and split files, SpokenCOCO's Karpathy-split JSON (§6).

Readers return Utterance records and keep broken pairs (a caption without audio, a wav without a caption) so the
dataset can report them by file. Introduced in notebooks/00_setup_and_data.ipynb.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import re
import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "test")
SEEN_VOICES = "seen_voices"  # synthetic corpora: a sub-corpus with the test split spoken by training speakers


class CorpusError(ValueError):
    """A corpus file is missing or unusable; the message names the file and what to do about it."""


class WeightsError(RuntimeError):
    """A weights file or folder exists but cannot be loaded (cut short, wrong format); the message names it."""


@dataclass
class Utterance:
    """One spoken caption of one image. Readers keep broken pairs (wav_path or caption None) for the checks.

    `problem` is a reason found while reading the index (a repeated split line, an empty caption...) and `source`
    the "file:line" it was found at; the dataset raises or skips such utterances like any other bad file.
    """

    uid: str
    wav_path: Path | None
    image_path: Path
    image_name: str
    image_id: int
    caption: str | None
    speaker: str | None = None
    problem: str | None = None
    source: str | None = None


_RERUN = "re-run the corpus's prepare.py / make_synthetic_corpus.py"
_FIX = {
    "audio without caption": "add its caption to the caption file or delete the wav",
    "missing audio": f"restore the wav ({_RERUN})",
    "unreadable audio": "make the path a readable regular file",
    "empty audio": "re-extract the wav from its archive: it holds no samples",
    "corrupt audio": "re-extract the wav from its archive: soundfile cannot decode it or it holds NaN/inf samples",
    "truncated audio": "re-extract the wav from its archive: it holds fewer samples than its header declares "
                       "(a cut download or copy)",
    "wrong sample rate": "pass resample=True (the default) or convert the file to 16 kHz",
    "missing image": f"restore the image ({_RERUN})",
    "unreadable image": "make the path a readable regular file",
    "empty image": "re-extract the image from its archive: it has 0 bytes",
    "corrupt image": "re-extract the image from its archive: PIL cannot decode it",
    "image without captions": "add the image's captions to Flickr8k.token.txt or remove it from the split file",
    "duplicate split line": "delete the repeated line: its captions would count twice",
    "image in two splits": "keep the image in one split file only: an overlap inflates the held-out recall",
    "repeated caption index": "give each caption of an image its own #n: which text the wav records is ambiguous",
    "empty caption": "write the caption's text, or delete the line and its wav",
    "alignment past the audio": "use the CTM made for these wavs, correct that line, or leave the CTM out",
}


def corpus_error(path, reason: str, detail: str = "", more: int = 0) -> CorpusError:
    """The CorpusError for one bad file: where it is, what is wrong (a key of _FIX) and how to fix it."""
    also = f" ({more} more problem(s) found)" if more else ""
    return CorpusError(f"{path}: {reason}{detail}. Fix: {_FIX[reason]}; or pass on_error='skip' to leave such "
                       f"utterances out (they are counted and reported){also}.")


def read_text(path: Path) -> str:
    """A UTF-8 text file (a BOM is allowed); other bytes are a CorpusError naming the file and the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}). "
                          "Re-extract the file from its archive, or convert it, e.g. iconv -f latin1 -t utf-8."
                          ) from None


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line."""
    if not path.is_file():
        if path.parent.is_dir() and any(path.parent.iterdir()):  # a corpus is there, but broken: no "prepare it"
            raise CorpusError(f"{path}: {what} not found, though {path.parent} holds other corpus files. The "
                              f"corpus is incomplete: restore the file, or {_RERUN} into a new folder.")
        raise CorpusError(f"{path}: {what} not found. Prepare the corpus first (data_scripts/flickr8k/prepare.py "
                          "for the real one, data_scripts/make_synthetic_corpus.py for a synthetic one).")
    return [(n, line.rstrip("\r")) for n, line in enumerate(read_text(path).split("\n"), 1) if line.strip()]


def _read_captions(path: Path) -> tuple[dict[str, dict[int, str]], dict[tuple[str, int], tuple[str, str]]]:
    """Flickr8k.token.txt → ({image stem: {n: caption without its trailing "."}}, {(stem, n): (problem, where)})."""
    captions: dict[str, dict[int, str]] = {}
    problems, first_line = {}, {}
    for lineno, line in _read_lines(path, "caption file"):
        key, tab, text = line.partition("\t")
        name, hash_, n = key.rpartition("#")
        if not (tab and hash_ and n.isdigit()):
            raise CorpusError(f"{path}:{lineno}: expected '<image>.jpg#<n>\\t<caption>', got {line!r}.")
        stem, n = name.removesuffix(".jpg"), int(n)
        text = text.strip()
        text = text[:-1].rstrip() if text.endswith(".") else text
        if (stem, n) in first_line:
            problems[stem, n] = ("repeated caption index", f"{path}:{lineno} (first at line {first_line[stem, n]})")
            continue
        first_line[stem, n] = lineno
        if not text:
            problems[stem, n] = ("empty caption", f"{path}:{lineno}")
        captions.setdefault(stem, {})[n] = text
    return captions, problems


def _read_speakers(path: Path) -> dict[str, str]:
    """wav2spk.txt → {"<image>_<n>.wav": speaker}; optional, so a missing file gives {}."""
    if not path.is_file():
        return {}
    speakers = {}
    for lineno, line in _read_lines(path, "speaker file"):
        fields = line.split()
        if len(fields) != 2:
            raise CorpusError(f"{path}:{lineno}: expected '<image>_<n>.wav <speaker>', got {line!r}. "
                              "Fix or delete that line.")
        speakers[fields[0]] = fields[1]
    return speakers


def _split_lines(root: Path, split: str) -> list[tuple[str, str]]:
    """(image stem, "file:line") of one split file; an empty split file is an error."""
    path = root / f"Flickr_8k.{split}Images.txt"
    lines = [(line.strip().removesuffix(".jpg"), f"{path}:{n}") for n, line in _read_lines(path, "split file")]
    if not lines:
        raise CorpusError(f"{path}: the split file names no image. Re-extract it from Flickr8k_text.zip, or "
                          f"{_RERUN}.")
    return lines


def _elsewhere(root: Path, split: str) -> dict[str, str]:
    """Images of the other split files (those present) -> where they are listed."""
    out: dict[str, str] = {}
    for other in SPLITS:
        if other != split and (root / f"Flickr_8k.{other}Images.txt").is_file():
            for n, line in _read_lines(root / f"Flickr_8k.{other}Images.txt", "split file"):
                out.setdefault(line.strip().removesuffix(".jpg"), f"Flickr_8k.{other}Images.txt:{n}")
    return out


def read_flickr_split(root: str | Path, split: str) -> list[Utterance]:
    """Every caption of every image of one Flickr8k split, paired with its wav "<image>_<n>.wav" (§6.1).

    Index problems (a repeated split line, an image in two splits or without captions, a repeated caption index,
    an empty caption) come back as utterances with `problem` set, for the dataset to raise or count.
    """
    root = Path(root)
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {SPLITS}")
    names = _split_lines(root, split)
    captions, caption_problems = _read_captions(root / "Flickr8k.token.txt")
    # The official id script numbers images by their position in the sorted list of Images/*.jpg (§6.1).
    image_ids = {p.stem: i for i, p in enumerate(sorted((root / "Images").glob("*.jpg"), key=lambda p: p.stem))}
    wav_dir = root / "flickr_audio" / "wavs"
    recorded: dict[str, set[int]] = {}  # image stem -> caption indices that have a wav
    for stem in (p.stem for p in wav_dir.glob("*.wav")):
        name, _, n = stem.rpartition("_")
        if n.isdigit():
            recorded.setdefault(name, set()).add(int(n))
    speakers, elsewhere, seen = _read_speakers(root / "flickr_audio" / "wav2spk.txt"), _elsewhere(root, split), {}
    utts = []
    for name, where in names:
        image, image_id = root / "Images" / f"{name}.jpg", image_ids.get(name, -1)
        caps, wavs = captions.get(name, {}), recorded.get(name, set())
        if name in seen or not (caps or wavs):
            problem = "duplicate split line" if name in seen else "image without captions"
            source = f"{where} (first at line {seen[name].rsplit(':', 1)[1]})" if name in seen else where
            utts.append(Utterance(f"{name}_?", None, image, name, image_id, None, problem=problem, source=source))
            continue
        seen[name] = where
        for n in sorted(caps.keys() | wavs):  # wavs without a caption are kept for the checks
            uid = f"{name}_{n}"
            problem, source = caption_problems.get((name, n), (None, None))
            if name in elsewhere:
                problem, source = "image in two splits", f"{where} (also {elsewhere[name]})"
            utts.append(Utterance(uid, wav_dir / f"{uid}.wav", image, name, image_id, caps.get(n),
                                  speakers.get(f"{uid}.wav"), problem, source))
    return utts


_COCO_FIX = "Re-run data_scripts/spokencoco/prepare.py."


def _check_coco_entry(path: Path, i: int, entry) -> None:
    """A SpokenCOCO entry must have the fields and types the reader uses; the error names the entry."""
    where = f"{path}: data[{i}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(
            entry.get("captions"), list):
        raise CorpusError(f"{where} needs 'image' (a string) and 'captions' (a list), got {str(entry)[:120]}. "
                          f"{_COCO_FIX}")
    rid = entry.get("reassign_id")
    if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise CorpusError(f"{where}.reassign_id must be an integer, got {rid!r}. {_COCO_FIX}")
    for j, cap in enumerate(entry["captions"]):
        if not isinstance(cap, dict):
            raise CorpusError(f"{where}.captions[{j}] must be an object, got {str(cap)[:120]}. {_COCO_FIX}")
        for key in ("wav", "text", "uttid", "speaker"):
            if cap.get(key) is not None and not isinstance(cap[key], str):
                raise CorpusError(f"{where}.captions[{j}].{key} must be a string, got {cap[key]!r}. {_COCO_FIX}")


def _read_coco_entries(path: Path) -> list:
    try:
        entries = json.loads(read_text(path))["data"]
    except FileNotFoundError:
        raise CorpusError(f"{path}: split file not found. Run data_scripts/spokencoco/prepare.py first.") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorpusError(f"{path}: not a SpokenCOCO split file ({e}). {_COCO_FIX}") from None
    if not isinstance(entries, list) or not entries:
        raise CorpusError(f"{path}: 'data' holds no entries. {_COCO_FIX}")
    for i, entry in enumerate(entries):
        _check_coco_entry(path, i, entry)
    return entries


def read_spokencoco_split(root: str | Path, split: str) -> list[Utterance]:
    """One utterance per spoken caption of SpokenCOCO/SpokenCOCO_ksplit_{split}.json, text lower-cased (§6.2)."""
    root = Path(root)
    splits = {"train": "train", "dev": "val", "val": "val", "test": "test"}
    if split not in splits:
        raise CorpusError(f"unknown split {split!r}; choose one of {sorted(splits)}")
    utts = []
    for entry in _read_coco_entries(root / "SpokenCOCO" / f"SpokenCOCO_ksplit_{splits[split]}.json"):
        image = Path(entry["image"])
        coco_number = re.search(r"(\d+)$", image.stem)
        image_id = entry.get("reassign_id", int(coco_number[1]) if coco_number else -1)
        for cap in entry["captions"]:
            wav = cap.get("wav")
            text = cap.get("text")
            uid = cap.get("uttid") or (Path(wav).stem if wav else f"{image.stem}_{len(utts)}")
            utts.append(Utterance(uid, root / "SpokenCOCO" / wav if wav else None, root / "mscoco_img" / image,
                                  image.stem, int(image_id), text.lower() if text else None, cap.get("speaker")))
    return utts


@contextmanager
def reading_archive(path: Path):
    """Inside it, a garbage or cut-short zip/tar is a CorpusError naming the archive (the tar filter's refusals pass)."""
    try:
        yield
    except (zipfile.BadZipFile, tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error,
            gzip.BadGzipFile, lzma.LZMAError) as e:
        why = " ".join(str(e).split())  # tarfile lists one line per method it tried
        raise CorpusError(f"{path}: not a readable archive ({type(e).__name__}: {why}); it is cut short or not the "
                          "file its name says. Fetch it again and compare its size with the source's.") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_input(path: Path, known_sha256: dict[str, str], readme: str) -> dict:
    """Hash one downloaded input; compare it with a known checksum when (and only when) one is known."""
    if not path.is_file():
        raise CorpusError(f"{path}: input not found. Download it first (see {readme}).")
    digest, known = sha256_file(path), known_sha256.get(path.name)
    if known and digest != known:
        raise CorpusError(f"{path}: sha256 {digest} differs from the known {known}; download it again.")
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest, "verified": bool(known)}


def finish_report(report: dict, expected: dict | None, out: Path) -> dict:
    """Compare found counts with the expected ones, mark the report ok or not, and save it as prepare_report.json."""
    report["mismatches"] = {k: {"expected": v, "found": report["counts"][k]} for k, v in (expected or {}).items()
                            if report["counts"][k] != v}
    report["ok"] = not report["mismatches"]
    (out / "prepare_report.json").write_text(json.dumps(report, indent=2))
    return report

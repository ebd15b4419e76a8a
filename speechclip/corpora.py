"""Reading corpus indexes: Flickr8k's caption and split files, SpokenCOCO's Karpathy-split JSON (§6).

Readers return Utterance records and keep broken pairs (a caption without audio, a wav without a caption) so the
dataset can report them by file. Introduced in notebooks/00_setup_and_data.ipynb.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "test")


class CorpusError(ValueError):
    """A corpus file is missing or unusable; the message names the file and what to do about it."""


class WeightsError(RuntimeError):
    """A weights file or folder exists but cannot be loaded (cut short, wrong format); the message names it."""


@dataclass
class Utterance:
    """One spoken caption of one image. Readers keep broken pairs (wav_path or caption None) for the checks."""

    uid: str
    wav_path: Path | None
    image_path: Path
    image_name: str
    image_id: int
    caption: str | None
    speaker: str | None = None


_FIX = {
    "audio without caption": "add its caption to the caption file or delete the wav",
    "missing audio": "restore the wav (re-run the corpus's prepare.py / make_synthetic_corpus.py)",
    "unreadable audio": "make the path a readable regular file",
    "empty audio": "re-extract the wav from its archive: it holds no samples",
    "corrupt audio": "re-extract the wav from its archive: soundfile cannot decode it",
    "wrong sample rate": "pass resample=True (the default) or convert the file to 16 kHz",
    "missing image": "restore the image (re-run the corpus's prepare.py / make_synthetic_corpus.py)",
    "unreadable image": "make the path a readable regular file",
    "empty image": "re-extract the image from its archive: it has 0 bytes",
    "corrupt image": "re-extract the image from its archive: PIL cannot decode it",
}


def _error(path, reason: str, detail: str = "", more: int = 0) -> CorpusError:
    also = f" ({more} more problem(s) found)" if more else ""
    return CorpusError(f"{path}: {reason}{detail}. Fix: {_FIX[reason]}; or pass on_error='skip' to leave such "
                       f"utterances out (they are counted and reported){also}.")


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise CorpusError(f"{path}: {what} not found. Prepare the corpus first (data_scripts/flickr8k/prepare.py "
                          "for the real one, data_scripts/make_synthetic_corpus.py for a synthetic one).")
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_captions(path: Path) -> dict[str, dict[int, str]]:
    """Flickr8k.token.txt → {image stem: {n: caption without its trailing "."}} (§6.1)."""
    captions: dict[str, dict[int, str]] = {}
    for lineno, line in enumerate(_read_lines(path, "caption file"), 1):
        key, tab, text = line.partition("\t")
        name, hash_, n = key.rpartition("#")
        if not (tab and hash_ and n.isdigit()):
            raise CorpusError(f"{path}:{lineno}: expected '<image>.jpg#<n>\\t<caption>', got {line!r}.")
        text = text.strip()
        text = text[:-1].rstrip() if text.endswith(".") else text
        captions.setdefault(name.removesuffix(".jpg"), {})[int(n)] = text
    return captions


def read_flickr_split(root: str | Path, split: str) -> list[Utterance]:
    """Every caption of every image of one Flickr8k split, paired with its wav "<image>_<n>.wav" (§6.1)."""
    root = Path(root)
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {SPLITS}")
    names = [n.strip().removesuffix(".jpg") for n in _read_lines(root / f"Flickr_8k.{split}Images.txt", "split file")]
    captions = _read_captions(root / "Flickr8k.token.txt")
    # The official id script numbers images by their position in the sorted list of Images/*.jpg (§6.1).
    image_ids = {p.stem: i for i, p in enumerate(sorted((root / "Images").glob("*.jpg"), key=lambda p: p.stem))}
    wav_dir = root / "flickr_audio" / "wavs"
    recorded: dict[str, set[int]] = {}  # image stem -> caption indices that have a wav
    for stem in (p.stem for p in wav_dir.glob("*.wav")):
        name, _, n = stem.rpartition("_")
        if n.isdigit():
            recorded.setdefault(name, set()).add(int(n))
    spk_file = root / "flickr_audio" / "wav2spk.txt"
    speakers = dict(line.split()[:2] for line in _read_lines(spk_file, "")) if spk_file.is_file() else {}
    utts = []
    for name in names:
        caps = captions.get(name, {})
        for n in sorted(caps.keys() | recorded.get(name, set())):  # wavs without a caption are kept for the checks
            uid = f"{name}_{n}"
            utts.append(Utterance(uid, wav_dir / f"{uid}.wav", root / "Images" / f"{name}.jpg", name,
                                  image_ids.get(name, -1), caps.get(n), speakers.get(f"{uid}.wav")))
    return utts


def read_spokencoco_split(root: str | Path, split: str) -> list[Utterance]:
    """One utterance per spoken caption of SpokenCOCO/SpokenCOCO_ksplit_{split}.json, text lower-cased (§6.2)."""
    root = Path(root)
    splits = {"train": "train", "dev": "val", "val": "val", "test": "test"}
    if split not in splits:
        raise CorpusError(f"unknown split {split!r}; choose one of {sorted(splits)}")
    path = root / "SpokenCOCO" / f"SpokenCOCO_ksplit_{splits[split]}.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise CorpusError(f"{path}: split file not found. Run data_scripts/spokencoco/prepare.py first.") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorpusError(f"{path}: not a SpokenCOCO split file ({e}). Re-run data_scripts/spokencoco/prepare.py.")
    utts = []
    for entry in entries:
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

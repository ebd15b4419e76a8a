"""Unpack the official Flickr8k and Flickr Audio Caption archives into the corpus layout of CONTRIBUTING.md (§6.1).

    .venv/bin/python data_scripts/flickr8k/prepare.py --images Flickr8k_Dataset.zip --text Flickr8k_text.zip \
        --audio flickr_audio.tar.gz --out data/flickr8k [--ctm flickr_8k.ctm]

Nothing is downloaded. The script records the sha256 of every input, flattens Flicker8k_Dataset/ into Images/,
checks the published counts and writes <out>/prepare_report.json. Introduced in notebooks/00_setup_and_data.ipynb.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
from speechclip import corpora  # noqa: E402
from speechclip.data import SPLITS, CorpusError, read_flickr_split  # noqa: E402
from speechclip.alignments import read_ctm  # noqa: E402

# Published sizes of the corpus (§6.1): 8,091 images, 40,460 caption lines, 40,000 wavs, 6k/1k/1k split images,
# hence 30k/5k/5k utterances.
EXPECTED = {"images": 8091, "caption_lines": 40460, "wavs": 40000, "train": 6000, "dev": 1000, "test": 1000,
            "train_utterances": 30000, "dev_utterances": 5000, "test_utterances": 5000}
# Deliberately empty: no checksum is published by the archives' sources that we could verify. Add an entry only
# from a trusted record (e.g. a colleague's report); until then the report lists what was actually used.
KNOWN_SHA256: dict[str, str] = {}
TEXT_FILES = ("Flickr8k.token.txt", "Flickr8k.lemma.token.txt", "Flickr_8k.trainImages.txt",
              "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt")


def check_input(path: Path) -> dict:
    """Hash one input and compare it with KNOWN_SHA256 when (and only when) a value is known."""
    return corpora.check_input(path, KNOWN_SHA256, "data_scripts/flickr8k/README.md")


def _is_junk(name: str) -> bool:
    # macOS archivers add __MACOSX/ and "._" resource forks next to the real files
    return "__MACOSX" in name or Path(name).name.startswith("._")


def extract_flat(zip_path: Path, dest: Path, suffix: str, keep=lambda name: True) -> int:
    """Copy every "*suffix" member of a zip into dest/ by base name (flattening Flicker8k_Dataset/)."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    with corpora.reading_archive(zip_path), zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = Path(info.filename).name
            if info.is_dir() or _is_junk(info.filename) or not name.endswith(suffix) or not keep(name):
                continue
            with zf.open(info) as src, open(dest / name, "wb") as dst:  # base name only: no path escapes dest
                shutil.copyfileobj(src, dst)
            count += 1
    return count


def extract_audio(tar_path: Path, out: Path) -> None:
    """Unpack flickr_audio.tar.gz; its members already sit under flickr_audio/."""
    with corpora.reading_archive(tar_path), tarfile.open(tar_path) as tf:
        tf.extractall(out, filter="data")  # "data" refuses absolute paths, "..", links out of out/
    if not (out / "flickr_audio" / "wavs").is_dir():
        raise CorpusError(f"{tar_path}: no flickr_audio/wavs/ inside; is this the MIT flickr_audio.tar.gz?")


def count_corpus(out: Path) -> dict:
    """The counts EXPECTED describes, plus utterances per split as the dataset will pair them."""
    token = corpora.read_text(out / "Flickr8k.token.txt").splitlines()
    counts = {"images": sum(1 for _ in (out / "Images").glob("*.jpg")),
              "caption_lines": sum(1 for line in token if line.strip()),
              "wavs": sum(1 for _ in (out / "flickr_audio" / "wavs").glob("*.wav"))}
    for split in SPLITS:
        utts = read_flickr_split(out, split)
        counts[split] = len({u.image_name for u in utts})
        counts[f"{split}_utterances"] = sum(1 for u in utts if u.caption and u.wav_path.is_file())
        counts[f"{split}_unpaired"] = len(utts) - counts[f"{split}_utterances"]
    return counts


def add_ctm(ctm: Path, out: Path) -> dict:
    """Copy a word-alignment CTM to <out>/flickr_8k.ctm after checking that it parses."""
    words = read_ctm(ctm)
    shutil.copyfile(ctm, out / "flickr_8k.ctm")
    return {"source": str(ctm), "utterances": len(words), "words": sum(map(len, words.values()))}


def prepare(images: Path, text: Path, audio: Path, out: Path, ctm: Path | None = None,
            expected: dict | None = EXPECTED) -> dict:
    """Hash, unpack and count; returns (and writes) the report. report["ok"] is False on any count mismatch."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"inputs": [check_input(Path(p)) for p in (images, text, audio)]}
    extract_flat(images, out / "Images", ".jpg")
    extract_flat(text, out, ".txt", keep=lambda name: name in TEXT_FILES)
    extract_audio(audio, out)
    report["alignments"] = add_ctm(Path(ctm), out) if ctm else None
    report["counts"] = count_corpus(out)
    return corpora.finish_report(report, expected, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, required=True, help="Flickr8k_Dataset.zip")
    p.add_argument("--text", type=Path, required=True, help="Flickr8k_text.zip")
    p.add_argument("--audio", type=Path, required=True, help="flickr_audio.tar.gz")
    p.add_argument("--out", type=Path, default=Path("data/flickr8k"))
    p.add_argument("--ctm", type=Path, help="optional word-alignment CTM to copy to <out>/flickr_8k.ctm")
    p.add_argument("--no-count-check", action="store_true", help="report counts without comparing them")
    args = p.parse_args(argv)
    report = prepare(args.images, args.text, args.audio, args.out, args.ctm,
                     None if args.no_count_check else EXPECTED)
    for item in report["inputs"]:
        print(f"{item['path']}: sha256 {item['sha256']} ({'verified' if item['verified'] else 'recorded'})")
    print("counts:", ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
    for key, m in report["mismatches"].items():
        print(f"MISMATCH {key}: expected {m['expected']}, found {m['found']}")
    print(f"report: {args.out / 'prepare_report.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

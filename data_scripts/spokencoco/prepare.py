"""Unpack SpokenCOCO and MS-COCO 2014 and write the Karpathy-split SpokenCOCO_ksplit_{train,val,test}.json (§6.2).

    .venv/bin/python data_scripts/spokencoco/prepare.py --audio SpokenCOCO.tar.gz \
        --train-images train2014.zip --val-images val2014.zip --karpathy dataset_coco.json --out data/spokencoco

Nothing is downloaded. Karpathy's "restval" images join train, as in every SpokenCOCO paper. reassign_id is the
Karpathy file's imgid (unique over all splits). Introduced in notebooks/00_setup_and_data.ipynb.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
from speechclip import corpora  # noqa: E402
from speechclip.data import CorpusError  # noqa: E402

# The standard Karpathy split: 82,783 train + 30,504 restval = 113,287 train, 5,000 val, 5,000 test images.
EXPECTED = {"train_images": 113287, "val_images": 5000, "test_images": 5000}
KNOWN_SHA256: dict[str, str] = {}  # deliberately empty: we know of no published checksums to verify against
KARPATHY_TO_KSPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def check_input(path: Path) -> dict:
    """Hash one input and compare it with KNOWN_SHA256 when (and only when) a value is known."""
    return corpora.check_input(path, KNOWN_SHA256, "data_scripts/spokencoco/README.md")


def extract_audio(tar_path: Path, out: Path) -> dict[str, dict]:
    """Unpack SpokenCOCO.tar.gz into out/SpokenCOCO/ and index its captions by image path ("val2014/COCO_...jpg")."""
    with corpora.reading_archive(tar_path), tarfile.open(tar_path) as tf:
        tf.extractall(out, filter="data")  # "data" refuses absolute paths, "..", links out of out/
    entries = {}
    for name in ("SpokenCOCO_train.json", "SpokenCOCO_val.json"):
        path = out / "SpokenCOCO" / name
        if not path.is_file():
            raise CorpusError(f"{tar_path}: no SpokenCOCO/{name} inside; is this the MIT SpokenCOCO.tar.gz?")
        try:
            entries.update({e["image"]: e for e in json.loads(corpora.read_text(path))["data"]})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorpusError(f"{path} (from {tar_path}): not a SpokenCOCO caption file ({e!r}); fetch the "
                              "archive again.") from None
    return entries


def extract_images(zip_path: Path, dest: Path) -> int:
    """Unpack train2014.zip / val2014.zip into mscoco_img/ (their members already start with train2014/, val2014/)."""
    with corpora.reading_archive(zip_path), zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.namelist() if m.endswith(".jpg") and "__MACOSX" not in m]
        zf.extractall(dest, members)  # ZipFile strips "..", drive letters and leading "/" from member names
    return len(members)


def read_karpathy(path: Path) -> list[tuple[str, str, int]]:
    """(image path "filepath/filename", ksplit name, imgid) for every image of dataset_coco.json."""
    try:
        images = json.loads(corpora.read_text(path))["images"]
        return [(f"{im['filepath']}/{im['filename']}", KARPATHY_TO_KSPLIT[im["split"]], im.get("imgid", i))
                for i, im in enumerate(images)]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorpusError(f"{path}: not Karpathy's dataset_coco.json ({e!r}); use the file from caption_datasets.zip.")


def write_ksplits(out: Path, spoken: dict[str, dict], karpathy: list[tuple[str, str, int]]) -> dict:
    """Write SpokenCOCO/SpokenCOCO_ksplit_{train,val,test}.json in the format the dataset reads (§6.2)."""
    splits = {"train": [], "val": [], "test": []}
    missing = []
    for image, split, imgid in karpathy:
        if image not in spoken:
            missing.append(image)
            continue
        splits[split].append({"image": image, "captions": spoken[image]["captions"], "reassign_id": imgid})
    counts = {"karpathy_images_without_audio": len(missing), "missing_examples": missing[:5]}
    for split, data in splits.items():
        (out / "SpokenCOCO" / f"SpokenCOCO_ksplit_{split}.json").write_text(json.dumps({"data": data}))
        counts[f"{split}_images"] = len(data)
        counts[f"{split}_captions"] = sum(len(e["captions"]) for e in data)
    return counts


def prepare(audio: Path, train_images: Path, val_images: Path, karpathy: Path, out: Path,
            expected: dict | None = EXPECTED) -> dict:
    """Hash, unpack, write the ksplit files and count; returns (and writes) the report."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"inputs": [check_input(Path(p)) for p in (audio, train_images, val_images, karpathy)]}
    spoken = extract_audio(audio, out)
    images = sum(extract_images(z, out / "mscoco_img") for z in (train_images, val_images))
    report["counts"] = {"spoken_images": len(spoken), "coco_images": images,
                        **write_ksplits(out, spoken, read_karpathy(karpathy))}
    return corpora.finish_report(report, expected, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", type=Path, required=True, help="SpokenCOCO.tar.gz")
    p.add_argument("--train-images", type=Path, required=True, help="train2014.zip")
    p.add_argument("--val-images", type=Path, required=True, help="val2014.zip")
    p.add_argument("--karpathy", type=Path, required=True, help="dataset_coco.json (Karpathy split)")
    p.add_argument("--out", type=Path, default=Path("data/spokencoco"))
    p.add_argument("--no-count-check", action="store_true", help="report counts without comparing them")
    args = p.parse_args(argv)
    report = prepare(args.audio, args.train_images, args.val_images, args.karpathy, args.out,
                     None if args.no_count_check else EXPECTED)
    for item in report["inputs"]:
        print(f"{item['path']}: sha256 {item['sha256']} ({'verified' if item['verified'] else 'recorded'})")
    print("counts:", ", ".join(f"{k} {v}" for k, v in report["counts"].items() if k != "missing_examples"))
    for key, m in report["mismatches"].items():
        print(f"MISMATCH {key}: expected {m['expected']}, found {m['found']}")
    print(f"report: {args.out / 'prepare_report.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

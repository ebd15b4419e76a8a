"""The real-corpus preparation scripts, run on tiny archives built here in the official archives' formats."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from speechclip.data import CorpusError, FlickrDataset, SpokenCOCODataset

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def load_script(corpus: str):
    spec = importlib.util.spec_from_file_location(f"prepare_{corpus}", SCRIPTS / corpus / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_zip(path: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, src in members.items():
            zf.writestr(name, src) if isinstance(src, bytes) else zf.write(src, name)
    return path


def write_tar(path: Path, members: dict[str, Path | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, src in members.items():
            if isinstance(src, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(src)
                tf.addfile(info, io.BytesIO(src))
            else:
                tf.add(src, name)
    return path


# ---------------------------------------------------------------- Flickr8k

@pytest.fixture
def flickr_archives(tmp_path, writers) -> dict[str, Path]:
    """Flickr8k_Dataset.zip (Flicker8k_Dataset/ + __MACOSX junk), Flickr8k_text.zip, flickr_audio.tar.gz."""
    src = writers.flickr(tmp_path / "src")
    jpgs = sorted((src / "Images").glob("*.jpg"))
    images = {f"Flicker8k_Dataset/{p.name}": p for p in jpgs}
    images[f"__MACOSX/Flicker8k_Dataset/._{jpgs[0].name}"] = b"\x00\x05\x16\x07 resource fork"
    text = {p.name: p for p in src.glob("*.txt")} | {"readme.txt": b"Flickr8k text files\n"}
    audio = {f"flickr_audio/wavs/{p.name}": p for p in sorted((src / "flickr_audio" / "wavs").glob("*.wav"))}
    audio["flickr_audio/wav2spk.txt"] = src / "flickr_audio" / "wav2spk.txt"
    return {"images": write_zip(tmp_path / "Flickr8k_Dataset.zip", images),
            "text": write_zip(tmp_path / "Flickr8k_text.zip", text),
            "audio": write_tar(tmp_path / "flickr_audio.tar.gz", audio), "ctm": src / "flickr_8k.ctm"}


TINY_FLICKR = {"images": 9, "caption_lines": 46, "wavs": 40, "train": 4, "dev": 2, "test": 2,
               "train_utterances": 20, "dev_utterances": 10, "test_utterances": 10}


def test_flickr_prepare_flattens_counts_and_loads(flickr_archives, tmp_path):
    prep, out = load_script("flickr8k"), tmp_path / "flickr8k"
    a = flickr_archives
    report = prep.prepare(a["images"], a["text"], a["audio"], out, ctm=a["ctm"], expected=TINY_FLICKR)
    assert report["ok"] and json.loads((out / "prepare_report.json").read_text())["ok"]
    assert sorted(p.name for p in (out / "Images").iterdir()) == sorted(n.split("/")[1] for n in
                                                                        zipfile.ZipFile(a["images"]).namelist()[:9])
    assert not (out / "Flicker8k_Dataset").exists() and not (out / "readme.txt").exists()
    first = report["inputs"][0]
    assert first["sha256"] == hashlib.sha256(a["images"].read_bytes()).hexdigest() and not first["verified"]
    assert report["alignments"]["utterances"] == 40 and (out / "flickr_8k.ctm").is_file()
    ds = FlickrDataset(out, "train", on_error="skip")
    assert len(ds) == 20 and not ds.skipped and ds[0]["alignment"]


def test_flickr_cli_reports_count_mismatch(flickr_archives, tmp_path, capsys):
    prep, out = load_script("flickr8k"), tmp_path / "out"
    a = flickr_archives
    argv = ["--images", str(a["images"]), "--text", str(a["text"]), "--audio", str(a["audio"]), "--out", str(out)]
    assert prep.main(argv) == 1  # tiny archives are not the published 8,091 images
    printed = capsys.readouterr().out
    assert "MISMATCH images: expected 8091, found 9" in printed and "recorded" in printed
    assert not json.loads((out / "prepare_report.json").read_text())["ok"]
    assert prep.main(argv + ["--no-count-check"]) == 0


def test_known_checksum_is_enforced(flickr_archives, tmp_path, monkeypatch):
    prep, a = load_script("flickr8k"), flickr_archives
    monkeypatch.setitem(prep.KNOWN_SHA256, "Flickr8k_text.zip", "0" * 64)
    with pytest.raises(CorpusError, match="Flickr8k_text.zip: sha256 .* differs"):
        prep.prepare(a["images"], a["text"], a["audio"], tmp_path / "o", expected=None)
    monkeypatch.setitem(prep.KNOWN_SHA256, "Flickr8k_text.zip", hashlib.sha256(a["text"].read_bytes()).hexdigest())
    assert prep.check_input(a["text"])["verified"]


def test_missing_or_hostile_archives(flickr_archives, tmp_path):
    prep, a = load_script("flickr8k"), flickr_archives
    with pytest.raises(CorpusError, match="nowhere.zip: input not found"):
        prep.prepare(tmp_path / "nowhere.zip", a["text"], a["audio"], tmp_path / "o")
    evil = write_tar(tmp_path / "evil.tar.gz", {"../escaped.wav": b"RIFF"})
    with pytest.raises(tarfile.TarError):
        prep.extract_audio(evil, tmp_path / "o")
    assert not (tmp_path / "escaped.wav").exists()


# ---------------------------------------------------------------- SpokenCOCO

@pytest.fixture
def coco_archives(tmp_path, writers) -> dict[str, Path]:
    """SpokenCOCO.tar.gz (original SpokenCOCO_{train,val}.json, wavs), train2014.zip, val2014.zip, dataset_coco.json."""
    src = writers.spokencoco(tmp_path / "src")
    entries = [e for s in ("train", "val", "test")
               for e in json.loads((src / "SpokenCOCO" / f"SpokenCOCO_ksplit_{s}.json").read_text())["data"]]
    for e in entries:
        del e["reassign_id"]  # the original files have no ids; prepare.py assigns them
    audio = {f"SpokenCOCO/SpokenCOCO_{s}.json": json.dumps({"data": [e for e in entries if
                                                                     e["image"].startswith(s)]}).encode()
             for s in ("train", "val")}
    audio |= {f"SpokenCOCO/{p.relative_to(src / 'SpokenCOCO')}": p for p in (src / "SpokenCOCO").rglob("*.wav")}
    karpathy_splits = ["train", "train", "restval", "restval", "val", "test", "test"]
    images = [{"filepath": e["image"].split("/")[0], "filename": e["image"].split("/")[1], "split": s,
               "imgid": 10 + i, "sentences": []} for i, (e, s) in enumerate(zip(entries, karpathy_splits))]
    images.append({"filepath": "val2014", "filename": "COCO_val2014_000000999999.jpg", "split": "val",
                   "imgid": 99, "sentences": []})  # in the Karpathy split but never recorded
    zips = {f: write_zip(tmp_path / f"{f}.zip", {str(p.relative_to(src / "mscoco_img")): p
                                                  for p in (src / "mscoco_img" / f).glob("*.jpg")})
            for f in ("train2014", "val2014")}
    karpathy = tmp_path / "dataset_coco.json"
    karpathy.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return {"audio": write_tar(tmp_path / "SpokenCOCO.tar.gz", audio), "train_images": zips["train2014"],
            "val_images": zips["val2014"], "karpathy": karpathy}


def test_spokencoco_prepare_writes_ksplits(coco_archives, tmp_path):
    prep, out = load_script("spokencoco"), tmp_path / "coco"
    report = prep.prepare(**coco_archives, out=out, expected={"train_images": 4, "val_images": 1, "test_images": 2})
    assert report["ok"] and report["counts"]["karpathy_images_without_audio"] == 1
    assert report["counts"]["coco_images"] == 7 and report["counts"]["train_captions"] == 8
    train = json.loads((out / "SpokenCOCO" / "SpokenCOCO_ksplit_train.json").read_text())["data"]
    assert [e["reassign_id"] for e in train] == [10, 11, 12, 13]  # restval joined train
    ds = SpokenCOCODataset(out, "train", on_error="skip")
    assert len(ds) == 8 and not ds.skipped and ds.image_ids()[::2] == [10, 11, 12, 13]
    assert ds[0]["text"] == ds[0]["text"].lower()


def test_spokencoco_cli_and_bad_karpathy(coco_archives, tmp_path, capsys):
    prep = load_script("spokencoco")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in coco_archives.items()] + [f"--out={tmp_path / 'o'}"]
    assert prep.main(argv) == 1 and "MISMATCH train_images: expected 113287, found 4" in capsys.readouterr().out
    coco_archives["karpathy"].write_text(json.dumps({"images": [{"filename": "x.jpg"}]}))
    with pytest.raises(CorpusError, match="dataset_coco.json: not Karpathy"):
        prep.prepare(**coco_archives, out=tmp_path / "o2")


# ---------------------------------------------------------------- broken archives name themselves

def _cut(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"<html>404 Not Found</html>" * 40)  # what a failed download often saves
    return path


@pytest.mark.parametrize("which", ["images", "text", "audio"])
@pytest.mark.parametrize("damage", [_cut, _garbage], ids=["cut short", "garbage"])
def test_flickr_broken_archive_is_named(flickr_archives, tmp_path, which, damage):
    prep, a = load_script("flickr8k"), dict(flickr_archives)
    bad = damage(a[which])
    with pytest.raises(CorpusError, match=rf"{bad.name}: not a readable archive .*Fetch it again"):
        prep.prepare(a["images"], a["text"], a["audio"], tmp_path / "o", expected=None)


@pytest.mark.parametrize("which", ["audio", "train_images", "val_images"])
@pytest.mark.parametrize("damage", [_cut, _garbage], ids=["cut short", "garbage"])
def test_spokencoco_broken_archive_is_named(coco_archives, tmp_path, which, damage):
    prep = load_script("spokencoco")
    bad = damage(coco_archives[which])
    with pytest.raises(CorpusError, match=rf"{bad.name}: not a readable archive"):
        prep.prepare(**coco_archives, out=tmp_path / "o", expected=None)


def test_spokencoco_caption_file_without_image_field(coco_archives, tmp_path):
    prep = load_script("spokencoco")
    audio = write_tar(tmp_path / "SpokenCOCO.tar.gz", {
        "SpokenCOCO/SpokenCOCO_train.json": json.dumps({"data": [{"captions": []}]}).encode(),
        "SpokenCOCO/SpokenCOCO_val.json": b'{"data": []}'})
    with pytest.raises(CorpusError, match=r"SpokenCOCO_train.json \(from .*SpokenCOCO.tar.gz\): not a SpokenCOCO"):
        prep.extract_audio(audio, tmp_path / "o")

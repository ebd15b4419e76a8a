"""Unit tests for speechclip.data on tiny corpora in the real formats (tests/conftest.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechclip.alignments import crop_alignment, normalize_uid, read_ctm
from speechclip.config import DataConfig
from speechclip.data import (CorpusError, FlickrDataset, LengthBucketSampler, SpokenCOCODataset, build_dataset,
                             collate, read_flickr_split, read_spokencoco_split)


def to_tensor(image):
    return torch.from_numpy(np.asarray(image.resize((32, 32)), dtype=np.float32)).permute(2, 0, 1) / 255


# ---------------------------------------------------------------- readers

def test_flickr_split_counts_ids_and_captions(flickr_root):
    train, dev, test = (read_flickr_split(flickr_root, s) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (20, 10, 10)  # 5 captions per image, like 30k/5k/5k
    all_names = sorted(p.stem for p in (flickr_root / "Images").glob("*.jpg"))
    for u in train + dev + test:
        assert u.image_id == all_names.index(u.image_name)  # the official id script's numbering
        assert u.uid == f"{u.image_name}_{u.uid.rsplit('_', 1)[1]}" and u.wav_path.name == f"{u.uid}.wav"
        assert not u.caption.endswith(".") and u.speaker in {"spk_a", "spk_b", "spk_c"}
    token = (flickr_root / "Flickr8k.token.txt").read_text().splitlines()[3].split("\t")[1]
    assert train[3].caption == token.rstrip(" .")  # wav suffix n is caption #n
    assert {u.uid for u in train}.isdisjoint(u.uid for u in dev + test)


def test_missing_split_file_names_it(flickr_root):
    (flickr_root / "Flickr_8k.devImages.txt").unlink()
    with pytest.raises(CorpusError, match="Flickr_8k.devImages.txt.*not found"):
        read_flickr_split(flickr_root, "dev")
    with pytest.raises(CorpusError, match="unknown split"):
        read_flickr_split(flickr_root, "val")


def test_malformed_token_line_names_file_and_line(flickr_root):
    with open(flickr_root / "Flickr8k.token.txt", "a") as f:
        f.write("no tab and no hash here\n")
    with pytest.raises(CorpusError, match=r"Flickr8k.token.txt:\d+"):
        read_flickr_split(flickr_root, "train")


def test_ctm_reading_and_uid_forms(tmp_path):
    path = tmp_path / "a.ctm"
    path.write_text("img1.jpg_#2 1 0.50 0.20 dog\nimg1.jpg_#2 1 0.10 0.30 a\nimg1_3 1 0.0 0.1 <sil>\nx_0 1 1 1 hi\n")
    ctm = read_ctm(path)
    assert ctm["img1_2"] == [("a", 0.1, pytest.approx(0.4)), ("dog", 0.5, pytest.approx(0.7))]
    assert "img1_3" not in ctm and normalize_uid("b.jpg#4") == "b_4"
    path.write_text("img1_0 1 zero 0.2 dog\n")
    with pytest.raises(CorpusError, match="a.ctm:1"):
        read_ctm(path)


def test_crop_alignment_shifts_and_clips():
    words = [("a", 0.0, 0.5), ("dog", 0.6, 1.2), ("runs", 1.3, 2.0)]
    assert crop_alignment(words, 0.5, 1.0) == [("dog", pytest.approx(0.1), pytest.approx(0.7)),
                                               ("runs", pytest.approx(0.8), 1.0)]
    assert crop_alignment(None, 0.5, 1.0) is None


def test_spokencoco_reader(coco_root):
    dev = read_spokencoco_split(coco_root, "dev")  # "dev" reads the val file
    assert len(dev) == 4 and all(u.caption == u.caption.lower() for u in dev)
    assert [u.image_id for u in dev] == [3, 3, 4, 4]  # reassign_id
    assert dev[0].wav_path.is_file() and dev[0].image_path.is_file() and dev[0].speaker


def test_spokencoco_id_from_file_name(writers, tmp_path):
    root = writers.spokencoco(tmp_path / "c", reassign=False)
    assert read_spokencoco_split(root, "test")[0].image_id == 100000 + 37 * 5  # COCO_val2014_000000100185.jpg


def test_spokencoco_missing_or_bad_split_file(coco_root):
    (coco_root / "SpokenCOCO" / "SpokenCOCO_ksplit_test.json").write_text("{not json")
    with pytest.raises(CorpusError, match="SpokenCOCO_ksplit_test.json"):
        read_spokencoco_split(coco_root, "test")
    (coco_root / "SpokenCOCO" / "SpokenCOCO_ksplit_val.json").unlink()
    with pytest.raises(CorpusError, match="SpokenCOCO_ksplit_val.json.*prepare.py"):
        SpokenCOCODataset(coco_root, "dev")


# ---------------------------------------------------------------- items

def test_item_fields(flickr_root):
    ds = FlickrDataset(flickr_root, "dev")
    item = ds[1]
    assert item["wav"].dtype == torch.float32 and item["wav"].ndim == 1
    assert item["image"].mode == "RGB" and item["text"] == ds.utterances[1].caption
    assert item["uid"] == ds.utterances[1].uid and item["image_id"] == ds.image_ids()[1]
    assert [w for w, _, _ in item["alignment"]] == item["text"].lower().split()
    assert list(ds.lengths()) == [ds[i]["wav"].numel() for i in range(len(ds))]  # headers match decoding
    transformed = FlickrDataset(flickr_root, "dev", image_transform=to_tensor)[1]["image"]
    assert torch.equal(transformed, to_tensor(item["image"]))


def test_resampling_policy(flickr_root, writers, capsys):
    u = read_flickr_split(flickr_root, "test")[0]
    writers.wav(u.wav_path, 1.0, seed=3, sample_rate=8000)
    (flickr_root / "flickr_8k.ctm").unlink()  # its alignment of the replaced wav would end past the new audio
    ds = FlickrDataset(flickr_root, "test")
    assert ds.lengths()[0] == 16000 and ds[0]["wav"].numel() == 16000  # resampled to 16 kHz
    assert ds.resampled == {str(u.wav_path)}
    strict = FlickrDataset(flickr_root, "test", resample=False)
    with pytest.raises(CorpusError, match=rf"{u.wav_path.name}: wrong sample rate \(8000 Hz"):
        strict[0]
    with pytest.raises(CorpusError, match="wrong sample rate"):
        strict.validate()
    FlickrDataset(flickr_root, "test", on_error="skip")
    assert "1 wavs are not at 16000 Hz and are resampled on load" in capsys.readouterr().out
    skip = FlickrDataset(flickr_root, "test", resample=False, on_error="skip")
    assert skip.skipped == [(str(u.wav_path), "wrong sample rate")] and len(skip) == 9


def test_normalize_waveform(flickr_root):
    wav = FlickrDataset(flickr_root, "dev", normalize_waveform=True, load_images=False)[0]["wav"]
    assert abs(wav.mean().item()) < 1e-4 and abs(wav.std(unbiased=False).item() - 1) < 1e-3


def test_train_crop_is_seeded_and_train_only(flickr_root):
    kw = dict(max_audio_seconds=0.7, load_images=False)
    train, again, val = (FlickrDataset(flickr_root, "train", train=t, **kw) for t in (True, True, False))
    full = val.lengths()
    assert (train.lengths() == np.minimum(full, 11200)).all()
    long = [i for i in range(len(val)) if full[i] > 11200]
    assert long and all(train[i]["wav"].numel() == 11200 for i in long)
    assert all(val[i]["wav"].numel() == full[i] for i in long)  # validation keeps the whole utterance
    first = [train[i]["wav"] for i in long]
    assert all(torch.equal(a, again[i]["wav"]) for a, i in zip(first, long))  # same (seed, epoch, index)
    train.set_epoch(1)
    assert any(not torch.equal(a, train[i]["wav"]) for a, i in zip(first, long))
    for i in long:
        item = train[i]
        assert all(0 <= s < e <= 0.7 + 1e-9 for _, s, e in item["alignment"])


def test_collate_pads_and_stacks(flickr_root):
    ds = FlickrDataset(flickr_root, "train", image_transform=to_tensor)
    items = [ds[i] for i in (0, 1, 2)]
    batch = collate(items)
    lens = [it["wav"].numel() for it in items]
    assert batch["wavs"].shape == (3, max(lens)) and batch["wav_lens"].tolist() == lens
    assert batch["wav_lens"].dtype == torch.long and batch["image_ids"].dtype == torch.long
    assert batch["images"].shape == (3, 3, 32, 32)
    for row, it in zip(batch["wavs"], items):
        n = it["wav"].numel()
        assert torch.equal(row[:n], it["wav"]) and not row[n:].any()
    assert batch["texts"] == [it["text"] for it in items] and len(batch["alignments"]) == 3
    no_media = collate([FlickrDataset(flickr_root, "dev", load_audio=False, load_images=False)[0]])
    assert no_media["wavs"] is None and no_media["images"] is None


def test_build_dataset_by_format(flickr_root, coco_root):
    flickr = build_dataset(DataConfig(root=str(flickr_root), format="flickr8k"), "test")
    coco = build_dataset(DataConfig(root=str(coco_root), format="spokencoco"), "train", train=True)
    assert isinstance(flickr, FlickrDataset) and isinstance(coco, SpokenCOCODataset) and coco.train
    assert len(coco) == 6 and coco[0]["alignment"] is None
    with pytest.raises(ValueError, match="unknown data format"):
        build_dataset(DataConfig(format="librispeech"), "train")


# ---------------------------------------------------------------- sampler

def padding(batches, lengths):
    return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)


def test_sampler_deterministic_and_covers_every_index():
    lengths = np.random.default_rng(0).integers(8000, 100000, size=103)
    s = LengthBucketSampler(lengths, 8, shuffle=True, drop_last=False, seed=3, pool_batches=4)
    first = list(s)
    assert first == list(LengthBucketSampler(lengths, 8, drop_last=False, seed=3, pool_batches=4))
    assert sorted(i for b in first for i in b) == list(range(103)) and len(s) == len(first) == 13
    s.set_epoch(1)
    assert list(s) != first
    dropped = LengthBucketSampler(lengths, 8, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 12 and all(len(b) == 8 for b in dropped)
    ordered = list(LengthBucketSampler(lengths, 8, shuffle=False, drop_last=False))
    assert [i for b in ordered for i in b] == list(np.argsort(lengths, kind="stable"))


def test_sampler_reduces_padding():
    lengths = np.random.default_rng(1).integers(8000, 100000, size=2000)
    rng = np.random.default_rng(2)
    random_batches = np.array_split(rng.permutation(2000), 2000 // 16)
    bucketed = list(LengthBucketSampler(lengths, 16, seed=0))
    assert padding(bucketed, lengths) < 0.1 * padding(random_batches, lengths)


@pytest.mark.parametrize("drop_last", [True, False])
def test_sampler_ddp_shards(drop_last):
    lengths = np.arange(50)
    shards = [list(LengthBucketSampler(lengths, 4, drop_last=drop_last, num_replicas=3, rank=r, seed=5))
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # equal share per rank (no rank waits at a collective)
    assert all(len(s) == len(LengthBucketSampler(lengths, 4, drop_last=drop_last, num_replicas=3)) for s in shards)
    seen = [i for s in shards for b in s for i in b]
    if drop_last:
        assert len(seen) == len(set(seen)) == 48  # disjoint: 12 full batches, 4 per rank
    else:
        assert set(seen) == set(range(50))  # all covered; padding repeats at most num_replicas - 1 batches


# ---------------------------------------------------------------- bad input

def _dev(root):
    return read_flickr_split(root, "dev")


def _garbage(path):
    path.write_bytes(b"this is not a media file" * 20)


def _silent_header(path):
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")  # valid header, no samples


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nonfinite(path):
    x = np.full(8000, 0.1, dtype=np.float32)
    x[100] = np.nan
    sf.write(path, x, 16000, subtype="FLOAT")  # float wavs can hold NaN; PCM ones cannot


def _extra_caption(root):
    name = _dev(root)[0].image_name
    with open(root / "Flickr8k.token.txt", "a") as f:
        f.write(f"{name}.jpg#5\tA caption nobody recorded .\n")
    return root / "flickr_audio" / "wavs" / f"{name}_5.wav"


def _orphan_wav(root, writers):
    path = root / "flickr_audio" / "wavs" / f"{_dev(root)[0].image_name}_7.wav"
    writers.wav(path, 0.5, seed=1)
    return path


# name -> (break the dev split and return the bad path, reason, skipped utterances, found at construction)
BAD = {
    "missing audio": (lambda r, w: (p := _dev(r)[0].wav_path).unlink() or p, "missing audio", 1, True),
    "caption without audio": (lambda r, w: _extra_caption(r), "missing audio", 1, True),
    "wav without caption": (_orphan_wav, "audio without caption", 1, True),
    "empty audio file": (lambda r, w: (p := _dev(r)[0].wav_path).write_bytes(b"") or p, "empty audio", 1, True),
    "audio with no samples": (lambda r, w: _silent_header(p := _dev(r)[0].wav_path) or p, "empty audio", 1, False),
    "corrupt audio": (lambda r, w: _garbage(p := _dev(r)[0].wav_path) or p, "corrupt audio", 1, False),
    "truncated audio": (lambda r, w: _truncate(p := _dev(r)[0].wav_path) or p, "truncated audio", 1, False),
    "non-finite audio": (lambda r, w: _nonfinite(p := _dev(r)[0].wav_path) or p, "corrupt audio", 1, False),
    "unreadable audio": (lambda r, w: ((p := _dev(r)[0].wav_path).unlink(), p.mkdir()) and p,
                         "unreadable audio", 1, True),
    "missing image": (lambda r, w: (p := _dev(r)[0].image_path).unlink() or p, "missing image", 5, True),
    "empty image": (lambda r, w: (p := _dev(r)[0].image_path).write_bytes(b"") or p, "empty image", 5, True),
    "corrupt image": (lambda r, w: _garbage(p := _dev(r)[0].image_path) or p, "corrupt image", 5, False),
    "truncated image": (lambda r, w: _truncate(p := _dev(r)[0].image_path) or p, "corrupt image", 5, False),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_naming_the_file(case, flickr_root, writers):
    breaker, reason, _, at_construction = BAD[case]
    path = breaker(flickr_root, writers)
    pattern = rf"{path.name}.*: {reason}.*Fix: .*on_error='skip'"
    if at_construction:
        with pytest.raises(CorpusError, match=pattern):
            FlickrDataset(flickr_root, "dev")
        if case == "missing image":  # an audio-only dataset still needs the image for its id
            with pytest.raises(CorpusError, match=pattern):
                FlickrDataset(flickr_root, "dev", load_images=False)
        return
    ds = FlickrDataset(flickr_root, "dev")  # only headers and decoding can find this one
    with pytest.raises(CorpusError, match=pattern):
        ds.validate()
    with pytest.raises(CorpusError, match=rf"{path.name}: {reason}"):
        ds[0]  # loading finds it too, whatever the error mode


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_skip_is_counted_and_reported(case, flickr_root, writers, capsys):
    breaker, reason, skipped, _ = BAD[case]
    path = breaker(flickr_root, writers)
    ds = FlickrDataset(flickr_root, "dev", on_error="skip")
    total = 10 + (case == "caption without audio") + (case == "wav without caption")
    assert ds.skipped == [(str(path), reason)] * skipped and len(ds) == total - skipped
    assert f"skipped {skipped} of {total} utterances: {skipped} {reason}" in capsys.readouterr().out
    assert all(ds[i]["wav"].numel() > 0 for i in range(len(ds)))  # what is left loads


def test_skip_summary_counts_each_reason(flickr_root, capsys):
    dev = _dev(flickr_root)
    dev[1].wav_path.unlink(), dev[2].wav_path.unlink(), _garbage(dev[3].wav_path)
    ds = FlickrDataset(flickr_root, "dev", on_error="skip")
    assert ds.summary().endswith("skipped 3 of 10 utterances: 2 missing audio, 1 corrupt audio")
    assert ds.summary() in capsys.readouterr().out and len(ds) == 7


def test_everything_skipped_is_an_error(flickr_root):
    for u in _dev(flickr_root):
        u.wav_path.unlink(missing_ok=True)
    with pytest.raises(CorpusError, match="every one of its 10 utterances was skipped"):
        FlickrDataset(flickr_root, "dev", on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        FlickrDataset(flickr_root, "test", on_error="ignore")


def test_spokencoco_caption_without_audio_and_wav_without_text(coco_root, capsys):
    path = coco_root / "SpokenCOCO" / "SpokenCOCO_ksplit_test.json"
    data = json.loads(path.read_text())
    del data["data"][0]["captions"][0]["wav"]
    data["data"][1]["captions"][1]["text"] = ""
    path.write_text(json.dumps(data))
    with pytest.raises(CorpusError, match="no wav listed"):
        SpokenCOCODataset(coco_root, "test")
    ds = SpokenCOCODataset(coco_root, "test", on_error="skip")
    assert sorted(r for _, r in ds.skipped) == ["audio without caption", "missing audio"] and len(ds) == 2


# ---------------------------------------------------------------- index integrity

def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def _split_file(root, split="dev"):
    return root / f"Flickr_8k.{split}Images.txt"


def _token_line(root, key):
    lines = (root / "Flickr8k.token.txt").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(key + "\t")), lines


def _empty_caption(root):
    key = f"{_dev(root)[0].image_name}.jpg#3"
    n, lines = _token_line(root, key)
    lines[n - 1] = f"{key}\t ."
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    return rf"Flickr8k.token.txt:{n}"


def _repeated_index(root):
    key = f"{_dev(root)[0].image_name}.jpg#2"
    first, lines = _token_line(root, key)
    _append(root / "Flickr8k.token.txt", f"{key}\tA second caption with the same index .\n")
    return rf"Flickr8k.token.txt:{len(lines) + 1} \(first at line {first}\)"


def _image_without_audio(root):
    extra = sorted(p.stem for p in (root / "Images").glob("*.jpg"))[-1]  # captioned, never recorded
    _append(_split_file(root), f"{extra}.jpg\n")
    return rf"{extra}_0.wav"


# name -> (break the dev split and return a pattern for where, reason, skipped, utterances before skipping)
INDEX = {
    "image without captions": (lambda r: _append(_split_file(r), "1_nocaptions.jpg\n") or r"devImages.txt:3",
                               "image without captions", 1, 11),
    "image without audio": (_image_without_audio, "missing audio", 5, 15),
    "duplicate split line": (lambda r: _append(_split_file(r), f"{_dev(r)[0].image_name}.jpg\n")
                             or r"devImages.txt:3 \(first at line 1\)", "duplicate split line", 1, 11),
    "image in two splits": (lambda r: _append(_split_file(r), _split_file(r, "train").read_text().split()[0] + "\n")
                            or r"devImages.txt:3 \(also Flickr_8k.trainImages.txt:1\)", "image in two splits", 5, 15),
    "repeated caption index": (_repeated_index, "repeated caption index", 1, 10),
    "empty caption": (_empty_caption, "empty caption", 1, 10),
}


@pytest.mark.parametrize("case", list(INDEX))
def test_split_integrity_raises_or_counts(case, flickr_root, capsys):
    breaker, reason, skipped, total = INDEX[case]
    where = breaker(flickr_root)
    with pytest.raises(CorpusError, match=rf"{where}: {reason}\. Fix: "):
        FlickrDataset(flickr_root, "dev")  # found at construction: reading the index is enough
    ds = FlickrDataset(flickr_root, "dev", on_error="skip")
    assert [r for _, r in ds.skipped] == [reason] * skipped and len(ds) == total - skipped
    assert f"skipped {skipped} of {total} utterances: {skipped} {reason}" in capsys.readouterr().out
    assert len({u.uid for u in ds.utterances}) == len(ds) and all(u.caption for u in ds.utterances)


def test_image_in_two_splits_is_reported_by_both(flickr_root):
    first_train = _split_file(flickr_root, "train").read_text().split()[0]
    _append(_split_file(flickr_root, "test"), first_train + "\n")
    for split in ("train", "test"):
        with pytest.raises(CorpusError, match="image in two splits"):
            FlickrDataset(flickr_root, split)


@pytest.mark.parametrize("fmt", ["flickr8k", "spokencoco"])
def test_empty_split_file_is_an_error_in_both_modes(fmt, flickr_root, coco_root):
    if fmt == "flickr8k":
        _split_file(flickr_root).write_text("\n")
        root, pattern = flickr_root, r"Flickr_8k.devImages.txt: the split file names no image"
    else:
        (coco_root / "SpokenCOCO" / "SpokenCOCO_ksplit_val.json").write_text('{"data": []}')
        root, pattern = coco_root, r"SpokenCOCO_ksplit_val.json: 'data' holds no entries"
    for mode in ("raise", "skip"):
        with pytest.raises(CorpusError, match=pattern):
            build_dataset(DataConfig(root=str(root), format=fmt, on_error=mode), "dev")


# ---------------------------------------------------------------- every error names its file

@pytest.mark.parametrize("name", ["Flickr8k.token.txt", "Flickr_8k.devImages.txt", "flickr_audio/wav2spk.txt",
                                  "flickr_8k.ctm"])
def test_non_utf8_text_names_file_and_line(name, flickr_root):
    path = flickr_root / name
    lines = path.read_text().count("\n")
    _append(path, "")
    with open(path, "ab") as f:
        f.write("caf\u00e9 na\u00efve\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=rf"{path.name}:{lines + 1}: not UTF-8 text \(byte 0xe9.*iconv"):
        FlickrDataset(flickr_root, "dev")


def test_malformed_speaker_line_names_file_and_line(flickr_root):
    path = flickr_root / "flickr_audio" / "wav2spk.txt"
    n = path.read_text().count("\n")
    _append(path, "just_one_field.wav\n")
    with pytest.raises(CorpusError, match=rf"wav2spk.txt:{n + 1}: expected '<image>_<n>.wav <speaker>'"):
        read_flickr_split(flickr_root, "dev")


@pytest.mark.parametrize("line, text", [("img1_0 1 nan 0.2 dog", "start 'nan'"), ("img1_0 1 0.1 inf dog", "duration 'inf'"),
                                        ("img1_0 1 -0.5 0.2 dog", "start '-0.5'")])
def test_ctm_times_must_be_finite_and_non_negative(tmp_path, line, text):
    path = tmp_path / "a.ctm"
    path.write_text(f"img1_0 1 0.0 0.1 a\n{line}\n")
    with pytest.raises(CorpusError, match=rf"a.ctm:2: .*{text}.*must be finite and >= 0"):
        read_ctm(path)


def test_alignment_past_the_audio_names_the_ctm_line(flickr_root, writers, capsys):
    u = _dev(flickr_root)[0]
    writers.wav(u.wav_path, 0.2, seed=1)  # a shorter recording than the one the CTM aligned
    ctm_lines = (flickr_root / "flickr_8k.ctm").read_text().splitlines()
    last = max(i for i, line in enumerate(ctm_lines, 1) if line.startswith(u.uid + " "))
    pattern = rf"flickr_8k.ctm:{last} \(word ends at [\d.]+ s, the audio at 0.20 s\): alignment past the audio"
    with pytest.raises(CorpusError, match=pattern):
        FlickrDataset(flickr_root, "dev").validate()
    with pytest.raises(CorpusError, match=pattern):
        FlickrDataset(flickr_root, "dev")[0]
    ds = FlickrDataset(flickr_root, "dev", on_error="skip")
    assert [r for _, r in ds.skipped] == ["alignment past the audio"] and len(ds) == 9


def _coco_break(root, change):
    path = root / "SpokenCOCO" / "SpokenCOCO_ksplit_test.json"
    data = json.loads(path.read_text())
    change(data["data"])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, text", [
    (lambda d: d[1].pop("image"), r"data\[1\] needs 'image' \(a string\) and 'captions' \(a list\)"),
    (lambda d: d[0].update(captions="a dog"), r"data\[0\] needs 'image'"),
    (lambda d: d[0]["captions"][1].update(text=7), r"data\[0\].captions\[1\].text must be a string, got 7"),
    (lambda d: d[0]["captions"][0].update(wav=["a.wav"]), r"data\[0\].captions\[0\].wav must be a string"),
    (lambda d: d[1]["captions"].append("a dog"), r"data\[1\].captions\[2\] must be an object"),
    (lambda d: d[0].update(reassign_id="5"), r"data\[0\].reassign_id must be an integer, got '5'"),
])
def test_spokencoco_fields_are_checked_by_entry(coco_root, change, text):
    _coco_break(coco_root, change)
    with pytest.raises(CorpusError, match=rf"SpokenCOCO_ksplit_test.json: {text}.*prepare.py"):
        read_spokencoco_split(coco_root, "test")


def test_broken_corpus_folder_is_not_told_to_prepare_from_scratch(flickr_root, tmp_path):
    (flickr_root / "Flickr8k.token.txt").unlink()
    with pytest.raises(CorpusError, match="caption file not found, though .* holds other corpus files") as err:
        read_flickr_split(flickr_root, "dev")
    assert "Prepare the corpus first" not in str(err.value)
    with pytest.raises(CorpusError, match="Prepare the corpus first"):
        read_flickr_split(tmp_path / "nothing_here", "dev")

"""Tiny corpora in the real Flickr8k and SpokenCOCO formats, written from scratch for the data tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lets `pytest` work from any folder without an installed package
    sys.path.insert(0, str(ROOT))

WORDS = "a dog cat child runs jumps on the grass red blue ball water man woman plays in".split()
COLORS = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 200, 40), (120, 40, 160), (20, 180, 180)]


def write_jpeg(path: Path, index: int, size=(48, 40)) -> None:
    """A solid background with a differently coloured square: distinct, valid RGB JPEGs."""
    im = Image.new("RGB", size, COLORS[index % len(COLORS)])
    im.paste(COLORS[(index + 3) % len(COLORS)], (8, 8, 24, 24))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=85)


def write_wav(path: Path, seconds: float, seed: int, sample_rate: int = 16000) -> None:
    """A sine with noise, PCM16 mono, like the real corpora's wavs."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * (seed % 7)) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sample_rate, subtype="PCM_16")


def caption_for(i: int, n: int) -> str:
    rng = np.random.default_rng(1000 * i + n)
    return "A " + " ".join(rng.choice(WORDS, size=3 + (i + n) % 4)) + " ."


def _ctm_lines(uid: str, caption: str, seconds: float) -> list[str]:
    words = caption.rstrip(" .").split()
    step = seconds / (len(words) + 1)
    return [f"{uid} 1 {step * (k + 0.5):.2f} {step * 0.8:.2f} {w.lower()}" for k, w in enumerate(words)]


def make_flickr(root: Path, splits=(("train", 4), ("dev", 2), ("test", 2)), captions: int = 5,
                extra_images: int = 1) -> Path:
    """Images/, Flickr8k.token.txt, Flickr_8k.*Images.txt, flickr_audio/{wavs,wav2spk.txt}, flickr_8k.ctm."""
    root.mkdir(parents=True, exist_ok=True)
    total = sum(n for _, n in splits) + extra_images
    names = [f"{1000268201 + 7919 * i}_{(0x693b08cb0e + 4099 * i) % 16**10:010x}" for i in range(total)]
    tokens, ctm, spk, pos = [], [], [], 0
    for split, count in splits:
        (root / f"Flickr_8k.{split}Images.txt").write_text("".join(f"{nm}.jpg\n" for nm in names[pos:pos + count]))
        pos += count
    for i, name in enumerate(names):
        write_jpeg(root / "Images" / f"{name}.jpg", i)
        for n in range(captions):
            cap = caption_for(i, n)
            tokens.append(f"{name}.jpg#{n}\t{cap}")
            if i >= total - extra_images:  # like the real corpus: some images have captions but no audio
                continue
            seconds = 0.6 + 0.15 * ((3 * i + n) % 10)
            write_wav(root / "flickr_audio" / "wavs" / f"{name}_{n}.wav", seconds, seed=10 * i + n)
            spk.append(f"{name}_{n}.wav {['spk_a', 'spk_b', 'spk_c'][(i + n) % 3]}")
            ctm += _ctm_lines(f"{name}_{n}", cap, seconds)
    tokens.append(f"{names[0]}.jpg.1#0\tA stray entry the real token file also has .")  # real-file quirk
    (root / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    (root / "flickr_audio" / "wav2spk.txt").write_text("\n".join(spk) + "\n")
    (root / "flickr_8k.ctm").write_text("\n".join(ctm) + "\n")
    return root


def make_spokencoco(root: Path, splits=(("train", 3), ("val", 2), ("test", 2)), captions: int = 2,
                    reassign: bool = True) -> Path:
    """SpokenCOCO/SpokenCOCO_ksplit_{split}.json, SpokenCOCO/wavs/..., mscoco_img/{train,val}2014/COCO_*.jpg."""
    index = 0
    for split, count in splits:
        data = []
        for _ in range(count):
            folder = "train2014" if split == "train" else "val2014"
            image = f"{folder}/COCO_{folder}_{100000 + 37 * index:012d}.jpg"
            write_jpeg(root / "mscoco_img" / image, index)
            caps = []
            for n in range(captions):
                uttid = f"m{index:03d}spk-{n}_{100000 + 37 * index}_{5000 + n}"
                wav = f"wavs/{'train' if split == 'train' else 'val'}/{index % 2}/{uttid}.wav"
                write_wav(root / "SpokenCOCO" / wav, 0.5 + 0.2 * n, seed=index * 10 + n)
                caps.append({"text": caption_for(index, n).rstrip(" .").upper(), "speaker": f"m{index:03d}spk",
                             "uttid": uttid, "wav": wav})
            entry = {"image": image, "captions": caps}
            if reassign:
                entry["reassign_id"] = index
            data.append(entry)
            index += 1
        (root / "SpokenCOCO" / f"SpokenCOCO_ksplit_{split}.json").write_text(json.dumps({"data": data}))
    return root


@pytest.fixture
def flickr_root(tmp_path) -> Path:
    return make_flickr(tmp_path / "flickr")


@pytest.fixture
def coco_root(tmp_path) -> Path:
    return make_spokencoco(tmp_path / "coco")


@pytest.fixture
def writers():
    """The corpus and file writers above, for tests that need variants (archives, other rates, more images)."""
    from types import SimpleNamespace

    return SimpleNamespace(flickr=make_flickr, spokencoco=make_spokencoco, jpeg=write_jpeg, wav=write_wav)

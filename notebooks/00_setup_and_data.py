# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Setup and data: images, spoken captions, word alignments
#
# SpeechCLIP learns from pairs of an image and a *spoken* caption of it. In this notebook you check the environment,
# build (or find) a corpus in the Flickr8k Audio Captions layout, and look at everything the later notebooks train
# on: images, waveforms, captions and word alignments. You will also see how utterances become padded batches, why the
# training set is cropped to 6.4 s, and how batching utterances of similar length cuts wasted compute.
# Paper: SpeechCLIP §3.1 (data). Reference: [docs/reference.md](../docs/reference.md) §1.2 (audio preprocessing), §1.4 (images), §6 (data).
#
# **Wall time on the 2-core CPU:** 16 s once the corpus exists; making the `cpu` corpus first (`make tutorial` does)
# takes 2.8 minutes (`benchmarks/tutorial_profile.py`).

# %% tags=["parameters"]
DATA_DIR = "../data/synthetic_cpu"  # any corpus in the Flickr8k layout: real, your own, or synthetic
CORPUS_PRESET = "cpu"  # the synthetic corpus made where DATA_DIR holds none: "smoke", "cpu" or "flickr8k" sizes
ARTIFACTS_DIR = "../artifacts"
FIGURES_DIR = "../figures"
SEED = 0
BATCH_SIZE = 16
CROP_DEMO_SECONDS = 1.0
N_SHOW = 6

# %% [markdown]
# ## 1. Environment
# Everything below runs on a laptop CPU; a GPU only makes the later notebooks faster.

# %%
import json
import platform
import textwrap
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import soundfile
import torch
import torchaudio
from IPython.display import Audio, display

import speechclip
from speechclip.data import SEEN_VOICES, SPLITS, FlickrDataset, LengthBucketSampler, collate, read_flickr_split
from speechclip.notebook import save_figure, save_metrics
from speechclip.synth import ensure_corpus, synthetic_metadata

device = "cuda" if torch.cuda.is_available() else "cpu"  # what the later notebooks' DEVICE = "auto" picks
for name, version in [("python", platform.python_version()), ("torch", torch.__version__),
                      ("torchaudio", torchaudio.__version__), ("soundfile", soundfile.__version__)]:
    print(f"{name:<11} {version}")
print(f"device      {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))

# %%
torch.manual_seed(SEED)
figures_dir = Path(FIGURES_DIR)
figures_dir.mkdir(parents=True, exist_ok=True)
metrics = {"data_dir": DATA_DIR, "torch": torch.__version__, "device": device}

# %% [markdown]
# ## 2. The corpus
# The real corpus is Flickr8k (8,091 photos, 5 written captions each) plus the Flickr Audio Caption Corpus
# (40,000 recordings of those captions). Offline we use a synthetic corpus written in exactly the same layout:
# rendered scenes, template captions and espeak-ng speech.
#
# `ensure_corpus` reads whatever corpus `DATA_DIR` holds and changes nothing in it: a prepared real Flickr8k
# (`data_scripts/flickr8k/prepare.py`), your own recordings in the layout, or a synthetic corpus of any size and
# seed (`data_scripts/make_synthetic_corpus.py`). Only where `DATA_DIR` holds no corpus does it generate the
# synthetic one of `CORPUS_PRESET` there (seed 0, a few minutes for `cpu`), which later runs then reuse.
#
# The pairing rule (§6.1): every image of a split gives one example per wav named after it, and the wav
# `<image>_<n>.wav` is the spoken version of caption `#n` of that image.

# %%
root = ensure_corpus(CORPUS_PRESET, Path(DATA_DIR).resolve())
meta = synthetic_metadata(root)  # None unless speechclip.synth wrote this corpus
metrics["corpus"] = {"synthetic": meta is not None, **({k: meta[k] for k in ("preset", "seed")} if meta else {})}
kind = f"synthetic, preset {meta['preset']}, seed {meta['seed']}" if meta else "not synthetic (real Flickr8k or your own)"
print(f"{root}: {kind}")
for path in sorted(root.iterdir()):
    size = f"{len(list(path.iterdir()))} entries" if path.is_dir() else f"{path.stat().st_size / 1e3:.1f} kB"
    print(f"{path.name:<28} {size}")

# %%
splits = {split: read_flickr_split(root, split) for split in SPLITS}
speakers_of = {split: {u.speaker for u in utts} - {None} for split, utts in splits.items()}  # wav2spk.txt
print(f"{'split':<6} {'images':>7} {'utterances':>11} {'speakers':>9} {'not in train':>13}")
for split, utts in splits.items():
    new = len(speakers_of[split] - speakers_of["train"])
    print(f"{split:<6} {len({u.image_id for u in utts}):>7} {len(utts):>11} {len(speakers_of[split]):>9} {new:>13}")
metrics["utterances"] = {split: len(utts) for split, utts in splits.items()}
metrics["images"] = {split: len({u.image_id for u in utts}) for split, utts in splits.items()}
splits["train"][0]

# %% [markdown]
# Sample output (cpu preset): `train 1500 images, 7500 utterances · dev 250, 1250 · test 500, 2500`; 180 speakers in
# train and dev, and 8 held-out speakers, who never speak in train or dev, in test ("not in train" 8). The real
# Flickr8k gives 6,000 / 1,000 / 1,000 images and 30,000 / 5,000 / 5,000 utterances (§6.1).

# %% [markdown]
# Only a synthetic corpus knows what each image shows (`metadata.json`: every object's shape, colour, size and
# place) and holds its test split a second time, spoken by training voices (`seen_voices/`, for notebook 10's
# new-voice comparison). On any other corpus the next cell says so and shows nothing.

# %%
if meta is None:
    print("not a synthetic corpus: no scene metadata and no seen_voices/ copy to show "
          "(notebook 10 then skips its new-voice comparison)")
else:
    first = splits["train"][0].image_name
    scene = meta["images"][first]
    print(f"{first}: layout {scene['layout']!r}, family {scene['family']}, variant {scene['variant']}")
    for obj in scene["objects"]:
        print("   ", {k: obj[k] for k in ("size", "colour", "shape", "center")})
    seen = root / SEEN_VOICES
    seen_utts = read_flickr_split(seen, "test") if (seen / "Flickr8k.token.txt").is_file() else []
    print(f"{SEEN_VOICES}/: {len(seen_utts)} test utterances in {len({u.speaker for u in seen_utts})} training voices")

# %% [markdown]
# ## 3. One item
# `FlickrDataset` turns an `Utterance` into tensors: a mono float32 waveform at 16 kHz (§1.2), the RGB image
# (CLIP's preprocessing is passed in later as `image_transform`, §1.4), the caption, an integer image id (the image's
# position among all image names, as the official id script numbers them) and the word alignment from the CTM file.

# %%
train_ds = FlickrDataset(root, "train")
item = train_ds[0]
for key, value in item.items():
    shown = f"{tuple(value.shape)} {value.dtype}" if torch.is_tensor(value) else value
    shown = f"PIL {value.mode} {value.size}" if key == "image" else shown
    shown = [(w, round(a, 2), round(b, 2)) for w, a, b in value[:3]] + ["..."] if key == "alignment" else shown
    print(f"{key:<10} {shown}")

# %% [markdown]
# ## 4. Images and their captions

# %%
fig, axes = plt.subplots(1, N_SHOW, figsize=(2.6 * N_SHOW, 3.8))
picks = range(0, len(train_ds), max(1, len(train_ds) // N_SHOW))
for ax, index in zip(axes, picks):
    it = train_ds[index]
    ax.imshow(it["image"])
    ax.set_title("\n".join(textwrap.wrap(it["text"], 28)), fontsize=8)
    ax.axis("off")
fig.tight_layout()
save_figure(fig, figures_dir / "00_images_and_captions.png")

# %% [markdown]
# ## 5. Listen to a caption
# HuBERT expects 16 kHz mono audio in [-1, 1] and nothing else: no filterbanks, no normalisation in SpeechCLIP
# (SpeechCLIP+ base adds a whole-utterance normalisation, `normalize_waveform=True`).

# %%
print(item["text"])
display(Audio(item["wav"].numpy(), rate=train_ds.sample_rate))

# %% [markdown]
# ## 6. Where the words are
# The CTM file gives each word's start and duration. SpeechCLIP never trains on it; we use it to *look at* what the
# models attend to and, later, to score keywords against the words actually spoken.

# %%
mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, hop_length=160, n_mels=64)(item["wav"])
seconds = item["wav"].numel() / 16000
fig, ax = plt.subplots(figsize=(10, 3))
ax.imshow((mel + 1e-6).log(), origin="lower", aspect="auto", extent=(0, seconds, 0, 64), cmap="magma")
for word, start, end in item["alignment"] or []:
    ax.axvline(start, color="white", lw=0.8)
    ax.axvline(end, color="white", lw=0.8, ls=":")
    ax.text((start + end) / 2, 58, word, color="white", ha="center", fontsize=9)
ax.set(xlabel="time (s)", ylabel="mel bin", title=item["text"])
fig.tight_layout()
save_figure(fig, figures_dir / "00_spectrogram_words.png", bbox_inches=None)
assert all(0 <= s < e <= seconds + 0.05 for _, s, e in item["alignment"] or [])

# %% [markdown]
# ## 7. Corpus statistics
# Durations come from the wav headers (`lengths()` decodes nothing), so this is cheap even for 40,000 files.

# %%
durations = train_ds.lengths() / train_ds.sample_rate
words = Counter(w.strip(".,").lower() for u in splits["train"] for w in u.caption.split())
speakers = Counter(u.speaker for u in splits["train"])
metrics.update(train_hours=float(durations.sum() / 3600), mean_seconds=float(durations.mean()),
               max_seconds=float(durations.max()), vocabulary=len(words), speakers=len(speakers))
print({k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items() if k not in ("utterances", "images")})

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
axes[0].hist(durations, bins=30, color="tab:blue")
axes[0].axvline(6.4, color="k", ls="--", label="6.4 s train crop")
axes[0].set(xlabel="seconds", ylabel="utterances", title="durations (train)")
axes[0].legend()
top = words.most_common(20)
axes[1].bar(range(len(top)), [n for _, n in top], color="tab:green")
axes[1].set_xticks(range(len(top)), [w for w, _ in top], rotation=70, fontsize=8)
axes[1].set(title=f"{len(top)} most frequent of {len(words)} words", ylabel="count")
axes[2].bar(range(len(speakers)), sorted(speakers.values(), reverse=True), color="tab:orange")
axes[2].set(title=f"utterances per speaker ({len(speakers)})", xlabel="speaker (sorted)", ylabel="utterances")
fig.tight_layout()
save_figure(fig, figures_dir / "00_corpus_stats.png", bbox_inches=None)

# %% [markdown]
# ## 8. From items to a batch
# A batch pads every waveform with zeros to the longest one in it and keeps the true lengths, `wav_lens` (§1.2).
#
# Five lines do it; we check them against `speechclip.data.collate` and use the package from here on.

# %%
items = [train_ds[i] for i in range(4)]
lens = [it["wav"].numel() for it in items]
wavs = torch.zeros(len(items), max(lens))
for row, it in zip(wavs, items):
    row[: it["wav"].numel()] = it["wav"]

batch = collate(items)
assert torch.equal(wavs, batch["wavs"]) and batch["wav_lens"].tolist() == lens
print({k: tuple(v.shape) if torch.is_tensor(v) else f"list[{len(v)}]" for k, v in batch.items() if v is not None})

# %% [markdown]
# ## 9. The training crop
# In training only, an utterance longer than 102,400 samples (6.4 s) is cut to a random 6.4 s window; validation
# and test always see the whole utterance (§1.2).
#
# Our utterances are short, so we demonstrate with a crop of `CROP_DEMO_SECONDS`. The offset depends only on
# (seed, epoch, index): the same epoch gives the same crop in any worker, a new epoch a new one.

# %%
crop_ds = FlickrDataset(root, "train", train=True, max_audio_seconds=CROP_DEMO_SECONDS, load_images=False)
index = int(np.argmax(durations))
first, again = crop_ds[index], crop_ds[index]
crop_ds.set_epoch(1)
later = crop_ds[index]
print(f"full {train_ds[index]['wav'].numel()} samples -> cropped {first['wav'].numel()}")
print("same epoch, same crop:", torch.equal(first["wav"], again["wav"]),
      "| next epoch, same crop:", torch.equal(first["wav"], later["wav"]))
print("words in the window:", [(w, round(a, 2), round(b, 2)) for w, a, b in first["alignment"] or []])

# %% [markdown]
# ## 10. Less padding: batches of similar length
# Random batches pad every utterance to the longest in its batch. `LengthBucketSampler` sorts random pools by length
# before cutting batches, then shuffles the batches, so each batch holds similar lengths and the order stays random.

# %%
lengths = train_ds.lengths()
def padding_fraction(batches):
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return 1 - lengths[np.concatenate(batches)].sum() / padded

order = np.random.default_rng(SEED).permutation(len(lengths))
random_batches = [order[i:i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]
bucketed = [np.array(b) for b in LengthBucketSampler(lengths, BATCH_SIZE, drop_last=False, seed=SEED)]
metrics["padding_random"], metrics["padding_bucketed"] = padding_fraction(random_batches), padding_fraction(bucketed)
print(f"padding: random batches {metrics['padding_random']:.1%}, length buckets {metrics['padding_bucketed']:.1%}")

# %% [markdown]
# Sample output (cpu preset, batch 16): `padding: random batches 43.0%<!-- 00_setup_and_data/padding_random*100 -->,
# length buckets 1.9%<!-- 00_setup_and_data/padding_bucketed*100 -->`: with random batches over 40% of the speech
# encoder's work would be spent on zeros.

# %% [markdown]
# ## Record the numbers

# %%
save_metrics("00_setup_and_data", metrics, ARTIFACTS_DIR, indent=2)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Summary
# - A corpus is images, captions and one wav per caption, paired by name (`<image>_<n>.wav` is caption `#n`); the
#   synthetic corpus and prepared real Flickr8k share this layout, so every later notebook runs on either.
# - Items are 16 kHz float waveforms, RGB images and integer image ids; batches zero-pad waveforms and keep
#   `wav_lens`; only training crops to 6.4 s, with offsets fixed by (seed, epoch, index).
# - Bad files raise a `CorpusError` naming the file, or with `on_error="skip"` are counted and reported; batching
#   similar lengths removes most of the padding.

# %% [markdown]
# ## Exercises
# 1. Delete one wav of the dev split in a *copy* of the corpus and build `FlickrDataset(copy, "dev")` with
#    `on_error="raise"` and then `"skip"`. What does each report?
# 2. Re-run section 10 with `pool_batches=1` and with a pool covering the whole split. How do padding and batch
#    diversity trade off?
# 3. Using the CTM, compute the average speaking rate (words per second) per speaker. Which speaker is fastest?

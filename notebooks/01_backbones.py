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
# # 01 · Backbones: a frozen HuBERT and a frozen CLIP
#
# SpeechCLIP trains almost nothing: it sits between two large frozen models, HuBERT (speech) and CLIP (images and text),
# and learns only a small bridge. In this notebook you will load both backbones through one interface, look at what they
# output, measure which HuBERT layers carry *words* (the reason SpeechCLIP sums all layers), and measure how well CLIP
# itself matches captions to images — the topline any speech model can at best approach. You will also build the two
# CLIP pieces the cascaded model needs: the reduced subword vocabulary and keyword encoding.
#
# Paper: SpeechCLIP §2 (Shih et al., 2022); reference [docs/reference.md](../docs/reference.md) §1, §4.4–4.5.
# Offline, the *pocket* backbones are trained here, with the original recipes, on the synthetic corpus (a few minutes, once).
#
# **Wall time on the 2-core CPU:** 10.3 minutes the first time (the pocket HuBERT's 2,000 steps 9.0, with the pocket
# CLIP's 6.3 in a second process at the same time, then the word probes 1.3), under a minute once both are cached
# (`benchmarks/tutorial_profile.py`).

# %% tags=["parameters"]
PRESET = "pocket"
DATA_DIR = "../data/synthetic_cpu"
ARTIFACTS_DIR = "../artifacts"
FIGURES_DIR = "../figures"
SEED = 0
PROBE_TRAIN_UTTS = 600
PROBE_TEST_UTTS = 300

# %%
import sys
from pathlib import Path

if str(Path.cwd().parent) not in sys.path:  # run from notebooks/ without installing the package
    sys.path.insert(0, str(Path.cwd().parent))

import matplotlib.pyplot as plt
import soundfile as sf
import torch

from speechclip import load_config
from speechclip.clip_encoder import load_clip
from speechclip.notebook import check_shape, save_figure, save_metrics
from speechclip.data import read_split
from speechclip.probes import clip_retrieval, encode_split, word_probe
from speechclip.speech_encoder import WeightedLayerSum, load_speech_encoder

torch.manual_seed(SEED)
cfg = load_config(PRESET, overrides={"data.root": DATA_DIR})
Path(FIGURES_DIR).mkdir(parents=True, exist_ok=True)

print(cfg.speech, cfg.clip, sep="\n")

# %% [markdown]
# **Offline only: both pocket backbones train at once.** On a 2-core CPU neither pocket backbone's training gets
# much from a second thread (the pocket HuBERT runs 1.4 times as fast with two threads as with one, the pocket CLIP
# 1.6 times; `benchmarks/README.md`), so the next cell starts the pocket CLIP's training in a second process with
# half the threads, and this kernel trains the pocket HuBERT with the other half; when the CLIP is done, the
# HuBERT's remaining steps take both threads. Section 3 waits for the CLIP.
# The result is the same cache folder either way. With real weights, or once both are cached, nothing starts.

# %%
from speechclip import pocket

threads, clip_job = torch.get_num_threads(), None
if cfg.clip.name == "pocket":
    clip_job = pocket.train_in_background("clip", cfg.pocket_clip, DATA_DIR, ARTIFACTS_DIR,
                                          threads=max(1, threads // 2))
    if clip_job.running:
        torch.set_num_threads(max(1, threads - threads // 2))
        pocket.reclaim_threads_after(clip_job, threads)  # the HuBERT takes both threads once the CLIP is done
        print(f"pocket CLIP: training in process {clip_job.proc.pid} with {max(1, threads // 2)} thread(s), "
              f"log {clip_job.log}; this kernel keeps {torch.get_num_threads()}")
    else:
        print(f"pocket CLIP: cached at {clip_job.out}")

# %% [markdown]
# ## 1. HuBERT: speech as a stack of hidden states
#
# SpeechCLIP takes a pretrained HuBERT as its speech encoder and never updates it (SpeechCLIP §2).
#
# HuBERT is a convolutional front-end (one frame every 320 samples = 20 ms at 16 kHz) followed by a transformer.
# It was pretrained by *masked prediction*: hide spans of frames and predict, for each hidden frame, a cluster id
# (k-means of MFCCs in the first iteration). SpeechCLIP keeps **every** hidden state — the transformer input and
# each of the L layer outputs — so one utterance gives a tensor of shape (L+1, T, D_a): 13 × T × 768 for HuBERT Base.
#
# With `PRESET = "pocket"` the loader trains a 4-layer HuBERT on this corpus with exactly that recipe (MFCC k-means
# targets, span masking, cosine-similarity logits), caches it under `artifacts/pocket/`, and then loads the saved folder
# the same way it would load `facebook/hubert-base-ls960`. The code below does not know which one it got.
# Where the pocket recipe departs from HuBERT's, it says why in `docs/reference.md` ("offline stand-ins"): a loss on
# unmasked frames too, 2,000 steps at learning rate 2e-3, every crop played at 0.8 to 1.2 times its speed (speed
# perturbation, the augmentation most speech recognisers train with: pitch and formants move with the speed, so the
# model hears more voices than the corpus has), bf16 arithmetic where the CPU has it, and crops rounded to 16 frames
# so the CPU reuses its kernels — the last two make a step 1.45 times as fast, which pays for the length.

# %%
speech = load_speech_encoder(cfg.speech, pocket_cfg=cfg.pocket_hubert, corpus_root=DATA_DIR,
                             artifacts_dir=ARTIFACTS_DIR)
n_params = sum(p.numel() for p in speech.parameters())
n_trainable = sum(p.numel() for p in speech.parameters() if p.requires_grad)
print(f"hidden size D_a = {speech.hidden_size}, hidden states L+1 = {speech.num_hidden_states}")
print(f"parameters: {n_params:,} (trainable: {n_trainable:,})")

# %% [markdown]
# One utterance through the encoder. The frame count follows the convolution arithmetic exactly
# (`floor((S - k) / s) + 1` per conv layer); the original code used `round(S / 320)`, which can count one frame
# too many (reference pitfall 9).

# %%
test_rows = [r for r in read_split(DATA_DIR, "test") if r["wav"] is not None]
wav, sr = sf.read(test_rows[0]["wav"], dtype="float32")
wavs, wav_lens = torch.from_numpy(wav)[None], torch.tensor([len(wav)])
hidden_states, feat_lens = speech(wavs, wav_lens)
T = int(feat_lens[0])
print(test_rows[0]["caption"], f"| {len(wav) / sr:.2f} s")
print("hidden_states", check_shape(hidden_states, (speech.num_hidden_states, 1, T, speech.hidden_size)))
print(f"frames: exact {T}, round(S/320) = {round(len(wav) / 320)}")

# %% [markdown]
# ## 2. Combining the layers: a learnable weighted sum
#
# SpeechCLIP does not pick a layer; it learns one scalar $w_l$ per hidden state, initialised to zero, and uses
# $$\text{speech\_feats} = \sum_{l=0}^{L} \operatorname{softmax}(w)_l \, h_l ,$$
# so training starts from the plain average (§1.1). For HuBERT Large each $h_l$ is first layer-normalised, because
# its pre-LN layers are not normalised (pitfall 6). The few lines below are the whole idea; the package's
# `WeightedLayerSum` must agree with them.

# %%
w = torch.zeros(speech.num_hidden_states, requires_grad=True)
teach = (torch.softmax(w, 0)[:, None, None, None] * hidden_states).sum(0)  # (B, T, D_a)

wls = WeightedLayerSum(speech.num_hidden_states, normalize=cfg.speech.normalize_hiddenstates)
speech_feats = wls(hidden_states)
if not cfg.speech.normalize_hiddenstates:
    assert torch.allclose(teach, speech_feats, atol=1e-5)
print("speech_feats", check_shape(speech_feats, (1, T, speech.hidden_size)))
print("initial layer weights:", torch.softmax(wls.weights, 0).detach().numpy().round(3))

# %% [markdown]
# ## 3. Which layers carry words?
#
# A linear probe answers it. For every spoken word of a test utterance (the corpus's CTM gives word boundaries) we take
# its frames, per layer, and train a logistic-regression classifier to name the word, on training-split words only.
# Two readings of a word: all its frames **mean-pooled**, and its single **middle frame** — what one frame knows about
# the word it sits in, which is what SpeechCLIP's attention layers see. Two baselines make the numbers mean something:
# **MFCCs** (13 + deltas, what the pocket HuBERT learned to cluster) and the **same architecture with random weights**
# (what the architecture alone gives). Synthetic TTS speech is very regular, so MFCCs are a strong baseline here; on real,
# varied recordings such as Flickr8k's, pretrained HuBERT features are much stronger than MFCCs.
#
# The probes' encoder passes run on every thread, so first the cell waits for the pocket CLIP's background training
# (on the 2-core machine it ends about a minute before the pocket HuBERT's).

# %%
if clip_job is not None:
    clip_job.wait()
    torch.set_num_threads(threads)
probe = word_probe(speech, DATA_DIR, PROBE_TRAIN_UTTS, PROBE_TEST_UTTS, seed=SEED)
untrained = load_speech_encoder(cfg.speech, random_init=True, pocket_cfg=cfg.pocket_hubert)
probe_random = word_probe(untrained, DATA_DIR, PROBE_TRAIN_UTTS, PROBE_TEST_UTTS, seed=SEED)
print(f"{probe['num_words']} words, {probe['train_tokens']} training / {probe['test_tokens']} test tokens, "
      f"majority-word accuracy {probe['majority_accuracy']:.3f}")
for view in ("mean", "frame"):
    print(f"{view:5s} layers {probe[view]['layer_accuracy']}  random-init {probe_random[view]['layer_accuracy']}"
          f"  MFCC {probe[view]['mfcc_accuracy']}")

# %%
layers = range(speech.num_hidden_states)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, view, title in zip(axes, ("mean", "frame"), ("mean-pooled word", "middle frame of the word")):
    ax.plot(layers, [100 * a for a in probe[view]["layer_accuracy"]], "o-", label="pretrained")
    ax.plot(layers, [100 * a for a in probe_random[view]["layer_accuracy"]], "s--", label="random weights")
    ax.axhline(100 * probe[view]["mfcc_accuracy"], color="gray", ls=":", label="MFCC (39-d)")
    ax.axhline(100 * probe["majority_accuracy"], color="k", lw=0.8, label="majority word")
    ax.set(xlabel="hidden state (0 = transformer input)", title=title)
axes[0].set_ylabel("word-probe accuracy (%)")
axes[1].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, f"{FIGURES_DIR}/01_word_probe.png", bbox_inches=None)

# %% [markdown]
# Sample output (`PRESET="pocket"`, `data/synthetic_cpu`, probe on the default 600/300 utterances, 68 words; the probe
# trains on training voices and is scored on the test split's held-out voices): mean-pooled
# 86.3 / 88.2 / 88.7 / 89.4 / 89.1 %<!-- 01_backbones/word_probe.mean.layer_accuracy.0*100 01_backbones/word_probe.mean.layer_accuracy.1*100 01_backbones/word_probe.mean.layer_accuracy.2*100 01_backbones/word_probe.mean.layer_accuracy.3*100 01_backbones/word_probe.mean.layer_accuracy.4*100 -->
# from state 0 to state 4, middle frame 80.5 → 81.8 %<!-- 01_backbones/word_probe.frame.layer_accuracy.0*100 01_backbones/word_probe.frame.layer_accuracy.3*100 -->;
# random weights 25.6 %<!-- 01_backbones/word_probe_random_init.mean.layer_accuracy.4*100 --> / 24.2 %<!-- 01_backbones/word_probe_random_init.frame.layer_accuracy.2*100 -->;
# MFCC 82.7 %<!-- 01_backbones/word_probe.mean.mfcc_accuracy*100 --> / 64.3 %<!-- 01_backbones/word_probe.frame.mfcc_accuracy*100 -->; majority
# 17.0 %<!-- 01_backbones/word_probe.majority_accuracy*100 -->. Pretraining puts word identity into the features (25 → 82 %), and the deeper
# states carry it best. Mean-pooled, this pocket HuBERT matches MFCCs on voices it never heard; from a word's middle
# frame alone, what SpeechCLIP's attention reads, it knows the word better than MFCCs do. Two choices got it there
# (`benchmarks/README.md`): 180 training voices instead of 24 (the word probe on new voices rose from 56 % to 71 %),
# and a loss on unmasked frames as well as masked ones (71 % to 82 %); twice the pretraining then lifted what
# notebook 10's parallel model retrieves from these features by half.

# %% [markdown]
# ## 4. CLIP: one space for images and text
#
# CLIP, for images and text, stays frozen in the same way (SpeechCLIP §2).
#
# CLIP has an image tower and a text tower trained so that an image and its caption land close together:
# both outputs are L2-normalised vectors of size D (512 for ViT-B/32), compared by cosine similarity.
# The pocket CLIP is built from open_clip's own classes with the real 49,408-token BPE vocabulary and trained here
# contrastively (symmetric InfoNCE) on the training images and captions; it is saved as an open_clip folder and
# loaded by the same code path as a downloaded checkpoint.

# %%
clip = load_clip(cfg.clip, pocket_cfg=cfg.pocket_clip, corpus_root=DATA_DIR, artifacts_dir=ARTIFACTS_DIR)
print(f"joint embed_dim D = {clip.embed_dim}, token_dim D_t = {clip.token_dim}")
print(f"parameters: {sum(p.numel() for p in clip.parameters()):,}, all frozen:",
      not any(p.requires_grad for p in clip.parameters()))
print(clip.preprocess)

# %% [markdown]
# ### The topline: caption → image retrieval with CLIP itself
#
# SpeechCLIP's speech embeddings are trained to land where CLIP puts the image, so CLIP's own *text* → image recall
# bounds what speech → image can reach. Recall@k = percentage of test captions whose image is among the k most
# similar test images (and, for image → text, images with one of their captions in the top k).

# %%
topline = clip_retrieval(clip, DATA_DIR, "test")
print(f"pool: {topline['pool']} images, {topline['captions']} captions (chance R@1 = {100 / topline['pool']:.2f}%)")
for direction in ("text2image", "image2text"):
    print(f"{direction:11s}", {k: round(topline[f"{direction}_{k}"], 1) for k in ("R@1", "R@5", "R@10")})

# %% [markdown]
# Sample output (`PRESET="pocket"`, 500 test images): text → image R@1/5/10 =
# 50.0 / 96.1 / 99.2 %<!-- 01_backbones/clip_topline.text2image_R@1 01_backbones/clip_topline.text2image_R@5 01_backbones/clip_topline.text2image_R@10 -->, image → text
# 51.0 / 81.0 / 92.6 %<!-- 01_backbones/clip_topline.image2text_R@1 01_backbones/clip_topline.image2text_R@5 01_backbones/clip_topline.image2text_R@10 --> (chance R@1 = 0.2 %<!-- unrecorded -->). The test pool is built from scene *families* that differ in one
# attribute, and most R@1 misses are such near-misses (mostly swapped left/right order or a different shape): R@5 is
# near-perfect, R@1 needs the fine distinctions.

# %%
split = encode_split(clip, DATA_DIR, "test")
first = [int((split["caption_image"] == i).nonzero()[0]) for i in range(8)]  # first caption of 8 images
sim = split["text_embeds"][first] @ split["image_embeds"][:8].T  # (8 captions, 8 images)
fig, ax = plt.subplots(figsize=(8, 4.5))
im = ax.imshow(sim.numpy(), cmap="viridis")
ax.set_yticks(range(8), [split["captions"][i][:45] for i in first], fontsize=7)
ax.set_xticks(range(8), [f"img {i}" for i in range(8)], fontsize=7)
ax.set_title("CLIP cosine similarity: caption i vs image j (diagonal = true pairs)")
fig.colorbar(im)
fig.tight_layout()
save_figure(fig, f"{FIGURES_DIR}/01_clip_similarity.png")

# %% [markdown]
# ## 5. The reduced vocabulary (cascaded SpeechCLIP, §4.4)
#
# The cascaded model quantises speech onto CLIP *subword embeddings*. Only subwords the corpus uses are candidates:
# tokenize every caption to 77 ids, count each id (padding 0, SOT and EOT included), and order by count, ties by id.
# Unlike the original code we never replace CLIP's embedding table (pitfall 2): the reduced vocabulary is an index into it,
# and the positions of padding/SOT/EOT are looked up, not assumed to be 0, 2, 3 (pitfall 1). The original also counted
# dev and test captions (pitfall 15); here we use training captions only.

# %%
train_captions = [r["caption"] for r in read_split(DATA_DIR, "train")]
clip.set_vocab(train_captions)
V = len(clip.vocab_ids)
print("vocab_embeds", check_shape(clip.vocab_embeds, (V, clip.token_dim)))
print("special positions (pad, SOT, EOT):", clip.special_vocab_positions.tolist())
print("most frequent:", clip.decode_vocab(range(12)))

# %% [markdown]
# ## 6. Feeding keywords to the CLIP text encoder (§4.5)
#
# The cascaded branch produces K keyword vectors in CLIP's token-embedding space and reads them with the frozen text
# encoder as the sequence `[SOT, kw_1 … kw_K, EOT]`: add positional embeddings, run the causal transformer, take the
# output at EOT, project. If the keywords are exactly a caption's subword embeddings, this must equal encoding the
# caption as text — a check of the whole path — and gradients must reach the keywords although CLIP is frozen.

# %%
caption = test_rows[0]["caption"]
ids = clip.tokenize([caption])[0]
n = int((ids == clip.eot_id).nonzero()[0]) - 1  # subwords between SOT and EOT
keyword_embeds = clip.model.token_embedding.weight[ids[1:n + 1]][None].clone().requires_grad_(True)  # (1, K, D_t)
via_keywords = clip.encode_keywords(keyword_embeds)
via_text = clip.encode_text([caption])
print("keyword_embeds", check_shape(keyword_embeds, (1, n, clip.token_dim)),
      f"| cosine(keywords, text) = {float(via_keywords @ via_text.T):.6f}")
assert torch.allclose(via_keywords, via_text, atol=1e-5)
via_keywords.sum().backward()
print("gradient reaches keywords:", keyword_embeds.grad.abs().sum().item() > 0)

# %% [markdown]
# ## Summary
#
# - HuBERT gives L+1 hidden states per 20 ms frame; SpeechCLIP keeps all of them and learns a softmax-weighted sum,
#   starting from the average. The word probe shows which layers carry word identity best — and that pretraining,
#   not the architecture, puts it there.
# - CLIP maps images and captions into one normalised space; its own caption → image recall is the topline for
#   speech → image retrieval.
# - The cascaded model's interface to CLIP is a frequency-ordered subset of CLIP's token embeddings plus a keyword
#   path through the frozen text encoder, which reproduces `encode_text` exactly when fed real subwords.
#
# ## Exercises
#
# 1. Rerun the word probe with `max_train_utts` halved and doubled. How stable is the best layer? What does that
#    suggest about reading one layer versus learning a weighted sum?
# 2. Encode each test caption with its words shuffled. How much does text → image recall drop, and what does that say
#    about how much word order (e.g. "left of") CLIP uses on this corpus?
# 3. Feed `encode_keywords` only the *content* words of a caption (drop "a", "the", …). How close does the embedding
#    stay to the full caption's? This is the regime the cascaded model works in.

# %%
metrics = {
    "preset": PRESET, "data_dir": DATA_DIR,
    "speech": {"hidden_size": speech.hidden_size, "num_hidden_states": speech.num_hidden_states,
               "parameters": n_params},
    "word_probe": probe, "word_probe_random_init": probe_random,
    "clip": {"embed_dim": clip.embed_dim, "token_dim": clip.token_dim, "vocab_size": V},
    "clip_topline": topline,
}
out = save_metrics("01_backbones", metrics, ARTIFACTS_DIR)
print(out, "| figures:", sorted(p.name for p in Path(FIGURES_DIR).glob("01_*.png")))

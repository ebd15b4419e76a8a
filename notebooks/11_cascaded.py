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
# # 11 · Cascaded SpeechCLIP: speech → keywords → CLIP's text encoder
#
# The cascaded model turns an utterance into K = 8 *keywords*: K learnable tokens attend over the frozen HuBERT
# features, are batch-normalised to the statistics of CLIP's subword embeddings, and are snapped onto the
# nearest real CLIP subword by a cosine vector quantiser with a straight-through gradient. The frozen CLIP text
# encoder reads `[SOT, kw_1 … kw_K, EOT]` as if it were a sentence, and that sentence embedding is trained to
# match the image. You will write the quantiser and the BatchNorm initialisation yourself, check them against the
# package, train the model, and look at the words it picks and where it listens. Paper: SpeechCLIP §2.3 (Shih et
# al., SLT 2022), the cascaded model; reference [docs/reference.md](../docs/reference.md) §2, §4, §7 and §9.
#
# **Wall time on the 2-core CPU:** 2.9 minutes with the defaults (1,500 training steps in 104 s, on the features
# notebook 10 cached; `benchmarks/tutorial_profile.py`).

# %% tags=["parameters"]
PRESET = "pocket"
DATA_DIR = "../data/synthetic_cpu"
ARTIFACTS_DIR = "../artifacts"
FIGURES_DIR = "../figures"
SEED = 7122
MAX_STEPS = None  # None: the preset's value (pocket: 1500 for the keyword families)
DEVICE = "auto"  # where the model trains (fit) and is evaluated: "auto" (cuda when available), "cpu", "cuda:1"
RESUME = False  # True: continue ARTIFACTS_DIR/runs/11_cascaded instead of starting it over

# %%
import math
import shutil
import sys
import time
from pathlib import Path

try:
    import speechclip
except ImportError:  # running from notebooks/ before `make setup` installed the package
    sys.path.insert(0, str(Path.cwd().parent))
    import speechclip
import pandas as pd
import torch
import torch.nn.functional as F

from speechclip import load_config, pipeline, plots
from speechclip.evaluation import embed_split, evaluate
from speechclip.features import collate_features
from speechclip.metrics import chance_recall, dedup_images, mutual_retrieval
from speechclip.model import load_model, pad_mask_from_lens
from speechclip.train import resolve_device
from speechclip.notebook import assert_near_chance, check_shape, save_figure, save_metrics
from speechclip.cascaded import KeywordBatchNorm
from speechclip.evaluation import keyword_table
from speechclip.vq import CosineVectorQuantizer

print(f"speechclip from {Path(speechclip.__file__).parent}")

# %%
NB, t_start = "11", time.perf_counter()  # figure-name prefix; notebook wall clock
device = resolve_device(DEVICE)  # as fit resolves train.device, which the config below sets to DEVICE
figures, run_dir = Path(FIGURES_DIR), Path(ARTIFACTS_DIR) / "runs" / "11_cascaded"
figures.mkdir(parents=True, exist_ok=True)

print(f"torch {torch.__version__} on {device}; run directory {run_dir}")

# %% [markdown]
# ## 1. The idea
#
# In short, cascaded SpeechCLIP summarises speech into a few keyword vectors, replaces each by the nearest
# subword embedding of CLIP's vocabulary, and feeds that keyword sequence to the frozen CLIP text encoder, so the
# speech embedding is literally the CLIP embedding of a (bag-of-)words "sentence" that can be read.
#
# With $\mathbf h$ the weighted layer sum (as in notebook 10), $K$ keyword tokens and $E \in \mathbb R^{V\times D_t}$
# the reduced CLIP subword embeddings:
#
# $$\mathbf x = [\mathrm{CLS}_1\ldots\mathrm{CLS}_K;\ \mathbf h_1\ldots\mathbf h_T],\qquad
#   \mathbf k_j = \mathrm{BN}\big(W\,\mathrm{LN}(\mathbf x + \mathrm{MHA}(\mathbf x))_j\big),\quad j = 1..K$$
#
# $$p = \operatorname{softmax}\!\big(\cos(\mathbf k_j, E)/\tau\big),\quad
#   h = \operatorname{onehot}\big(\arg\max_v \cos(\mathbf k_j, E_v)\big),\quad
#   q = h + p - \operatorname{sg}(p),\quad \hat{\mathbf k}_j = qE$$
#
# $$\mathbf a = \operatorname{normalize}\Big(\mathrm{CLIPText}\big([\mathrm{SOT}, \hat{\mathbf k}_1 \ldots
#   \hat{\mathbf k}_K, \mathrm{EOT}]\big)_{\mathrm{EOT}}\Big)$$
#
# $\tau = 0.1$ is fixed; $\operatorname{sg}$ stops the gradient, so the forward pass uses exactly one subword and
# the backward pass the softmax's gradient (§4.3). $\mathbf a$ goes into the same masked InfoNCE as the parallel
# model (notebook 10, §2.1).
#
# On the `pocket` preset MHA has eight heads, where the Base recipe has one (Large Cascaded+ and
# Hybrid+ have eight). With one head the pocket model's runs fell into a weak or a strong outcome by the draw,
# this notebook's seed into the weak one; with eight, all three seeds we measured into the strong one
# (`benchmarks/README.md`, "Keyword attention heads"). The `base` and `large` presets keep the papers' one head.

# %% [markdown]
# ## 2. Build the experiment
#
# Same preparation as notebook 10 with the `cascaded` family. The reduced vocabulary (subwords of the
# training captions, most frequent first) is the VQ codebook: $V$ is tiny on the synthetic corpus.

# %%
overrides = {"data.root": DATA_DIR, "train.seed": SEED, "train.device": DEVICE}
if MAX_STEPS is not None:
    overrides["train.max_steps"] = MAX_STEPS
cfg = load_config(PRESET, "cascaded", overrides)
cfg.train.log_every = max(1, min(cfg.train.log_every, cfg.train.max_steps // 50))  # a curve even when short
print(cfg.model)
print(cfg.train)

# %%
t0 = time.perf_counter()
exp = pipeline.prepare(cfg, ARTIFACTS_DIR)
prepare_seconds = time.perf_counter() - t0
for split, fs in exp.features.items():
    print(f"{split:<5} {len(fs):>5} utterances of {len(fs.image_embeds):>4} images")
L1, D_a = exp.speech_encoder.num_hidden_states, exp.speech_encoder.hidden_size
D, D_t = exp.clip.embed_dim, exp.clip.token_dim
print(f"L+1 = {L1} hidden states of D_a = {D_a}; CLIP embed D = {D}, token D_t = {D_t}; "
      f"{prepare_seconds:.0f} s")

# %%
V, K = len(exp.clip.vocab_ids), cfg.model.num_keywords
E, masked = exp.clip.vocab_embeds.cpu(), exp.clip.special_vocab_positions.cpu()
print("vocab_embeds E", check_shape(E, (V, D_t)), "| masked (pad, SOT, EOT) at", masked.tolist())
print("most frequent subwords:", exp.clip.decode_vocab(range(min(V, 15))))

# %%
batch = collate_features([exp.features["train"][i] for i in range(4)])
B, T = len(batch["feat_lens"]), int(batch["feat_lens"].max())
print("hidden_states", check_shape(batch["hidden_states"], (L1, B, T, D_a)))
print("feat_lens    ", batch["feat_lens"].tolist())
print("image_embeds ", check_shape(batch["image_embeds"], (B, D)), "| image_ids", batch["image_ids"].tolist())
print("texts        ", batch["texts"][:2])

# %% [markdown]
# Through the model with `need_weights=True`: the keyword tokens, their continuous values after BatchNorm, the
# cosine scores against the codebook, the quantised keywords, their keyword→frame attention, and the CLIP
# sentence embedding of the keywords.

# %%
torch.manual_seed(SEED)
model = exp.model().eval()
with torch.no_grad():
    out = model.encode_features(batch["hidden_states"], batch["feat_lens"], need_weights=True)
print("keywords_continuous", check_shape(out["keywords_continuous"], (B, K, D_t)))
print("scores             ", check_shape(out["scores"], (B, K, V)))
print("keyword_embeds     ", check_shape(out["keyword_embeds"], (B, K, D_t)))
print("keyword_ids        ", check_shape(out["keyword_ids"], (B, K)))
print("attention          ", check_shape(out["attention"], (B, K, T)))
print("cascaded_embeds    ", check_shape(out["cascaded_embeds"], (B, D)))
print("untrained keywords of utterance 0:", exp.clip.decode_vocab(out["keyword_ids"][0]))


# %% [markdown]
# Sample output (`PRESET="pocket"`, V = 73): `keywords_continuous (4, 8, 128)`, `scores (4, 8, 73)`, `attention (4, 8, 50)`, `cascaded_embeds (4, 128)`; the untrained keywords are arbitrary subwords such as `['down', 'going', 'right', 'on', ...]`.

# %% [markdown]
# ## 3. The quantiser and the BatchNorm, by hand
#
# **Cosine straight-through VQ.** Eight lines from the equation. The check compares the forward output (it must
# be exactly a row of $E$) *and* the gradient that reaches the keywords under the same downstream loss; a plain
# `argmax` would pass no gradient at all. From here on we use `speechclip.vq.CosineVectorQuantizer`.

# %%
def teach_vq(keywords, codebook, tau, masked_positions):
    """Cosine VQ: forward = the nearest subword embedding, backward = the softmax's gradient."""
    cos = F.normalize(keywords, dim=-1) @ F.normalize(codebook, dim=-1).T  # (B, K, V)
    cos = cos.index_fill(-1, masked_positions, float("-inf"))  # never pick padding, SOT or EOT
    soft = torch.softmax(cos / tau, dim=-1)
    hard = F.one_hot(cos.argmax(-1), codebook.shape[0]).to(soft.dtype)
    onehot = hard + soft - soft.detach()  # value of hard, gradient of soft
    return onehot @ codebook, cos.argmax(-1)


# %%
g = torch.Generator().manual_seed(SEED)
kw_ours = torch.randn(4, K, D_t, generator=g, requires_grad=True)
kw_pkg = kw_ours.detach().clone().requires_grad_(True)
downstream = torch.randn(4, K, D_t, generator=g)  # a random linear loss after the VQ
ours, ids = teach_vq(kw_ours, E, cfg.model.vq_temperature, masked)
theirs = CosineVectorQuantizer(cfg.model.vq_temperature).train()(kw_pkg, E, masked)
assert torch.allclose(ours, theirs["keyword_embeds"]) and torch.equal(ids, theirs["keyword_ids"])
assert torch.allclose(ours.detach(), E[ids], atol=1e-6)  # forward: CLIP subword embeddings (+ soft - soft)
assert not set(ids.flatten().tolist()) & set(masked.tolist())
(ours * downstream).sum().backward()
(theirs["keyword_embeds"] * downstream).sum().backward()
assert torch.allclose(kw_ours.grad, kw_pkg.grad, atol=1e-6)
print(f"same output and same gradient (|grad| = {kw_ours.grad.norm():.4f}); picked:",
      exp.clip.decode_vocab(ids[0]))

# %% [markdown]
# **BatchNorm to CLIP token statistics (§4.2).** Before VQ, one `BatchNorm1d(K·D_t)` normalises every
# (slot, dimension) and its affine parameters start at the per-dimension std ($\gamma$) and mean ($\beta$) of
# $E$: keywords begin where the subword embeddings live, so cosine VQ has real neighbours. The official code
# flattens dimension-major but tiles the statistics keyword-major, so feature $(k, d)$ gets the statistics of
# dimension $(dK + k) \bmod D_t$ (pitfall 3); this codebase defaults to the intended init
# (`model.bn_init = "intended"`) and can reproduce the other with `"reference"`.

# %%
mean, std = E.float().mean(0), E.float().std(0)  # (D_t,), torch.std is unbiased like the reference
bn = model.cascaded.bn.bn  # keyword-major flattening: feature k * D_t + d
assert torch.allclose(bn.weight, std.repeat(K)) and torch.allclose(bn.bias, mean.repeat(K))
flat = torch.arange(K * D_t)
k_of, d_of = flat // D_t, flat % D_t
reference = KeywordBatchNorm(K, D_t, E, bn_init="reference").bn
assert torch.allclose(reference.weight, std[(d_of * K + k_of) % D_t])
moved = (reference.weight != bn.weight).float().mean()
print(f"intended init = CLIP token stats per dimension; the reference init moves {moved:.0%} of them")
kbn = KeywordBatchNorm(K, D_t, E).train()
with torch.no_grad():
    normed = kbn(3 + 5 * torch.randn(512, K, D_t, generator=g))  # keywords at an arbitrary scale
print(f"after BN, slot 0: max |mean - E mean| = {(normed[:, 0].mean(0) - mean).abs().max():.3f}, "
      f"std ratio {float((normed[:, 0].std(0) / std).mean()):.3f}")


# %% [markdown]
# ## 4. Checks before training
#
# **Parameter count by formula.** Layer weights $L{+}1$, $K$ keyword tokens $K D_a$, one attention block
# $4D_a^2 + 4D_a$ and its LayerNorm $2D_a$, the projection $D_a D_t + D_t$, and BatchNorm's affine parameters
# $2KD_t$ (its running statistics are buffers). The CLIP codebook is frozen. The formula must also give the
# paper-size counts of §8.2 (Base 2,771,981; Large 5,008,154).

# %%
def cascaded_params(L1, D_a, D_t, K=8, learnable_temperature=False):
    return (L1 + K * D_a + (4 * D_a**2 + 4 * D_a) + 2 * D_a + (D_a * D_t + D_t) + 2 * K * D_t
            + int(learnable_temperature))

m = cfg.model
by_formula = cascaded_params(L1, D_a, D_t, K, m.temperature_trainable)
counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
assert by_formula == counted
assert cascaded_params(13, 768, 512) == 2_771_981  # Base (reference §8.2)
assert cascaded_params(25, 1024, 768, learnable_temperature=True) == 5_008_154  # Large
print(f"trainable {counted:,} (formula {by_formula:,}); frozen backbones {frozen:,}")

# %% [markdown]
# Sample output (`PRESET="pocket"`): `trainable 176,902 (formula 176,902)`, an eighth of the pocket parallel model's 1,359,877 (three transformer layers): there is no feed-forward block, and the codebook and text encoder are CLIP's, frozen. The one parameter more than Base's formula gives at these sizes is the temperature, which the pocket preset lets cascaded learn (section 5).

# %% [markdown]
# **An untrained model retrieves at chance** (same check as notebook 10). Its keyword hit rate is *not* zero:
# a keyword's five nearest subwords often include frequent words such as "a" or "the" that most captions contain.
# `kw_chance` is the hit rate of five random subwords of this codebook, the floor any slot has to beat.

# %%
test_set = exp.features["test"]
n_images, n_utts = len(test_set.image_embeds), len(test_set)
per_image = round(n_utts / n_images)
chance = {"speech2image": chance_recall(n_images), "image2speech": chance_recall(n_utts, per_image),
          "speech2text": chance_recall(n_utts)}
untrained = evaluate(model.to(device), test_set, collate_features, cfg.data.eval_batch_size)
# within 5 standard errors + 2 points of chance, per direction and k
rows = assert_near_chance(untrained, chance, {"speech2image": n_utts, "image2speech": n_images})
print(f"test pool: {n_images} images, {n_utts} utterances ({per_image} per image)")
pd.DataFrame(rows).T.round(2)

# %%
print("untrained keyword hit rate (%):", {k: round(v, 1) for k, v in untrained.items() if k.startswith("kw_")})

# %% [markdown]
# ## 4b. One training step, by hand
#
# `fit` runs one loop, written out here once: forward (features → branch → embeddings → loss), backward, clip the
# gradient norm, optimizer step. Repeated on a single batch, the loss must fall: a model that cannot fit one
# batch has a bug, and this is the cheapest place to find it. A separate copy of the model is used, so the run
# below starts from the same weights as without this cell.

# %%
hand = exp.model().train()
optimizer = torch.optim.Adam([p for p in hand.parameters() if p.requires_grad], lr=cfg.train.lr)
one_batch = collate_features([exp.features["train"][i] for i in range(cfg.data.batch_size)])
hand_losses = []
for _ in range(20):
    out = hand(one_batch)  # forward: the same call fit makes, returning the loss with the embeddings
    optimizer.zero_grad()
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(hand.parameters(), cfg.train.grad_clip)
    optimizer.step()
    hand_losses.append(out["loss"].item())
print("loss on one batch, every 4th step:", [round(v, 3) for v in hand_losses[::4]], "→", round(hand_losses[-1], 3))
assert hand_losses[-1] < hand_losses[0], "one batch did not fit: check the model before training"
del hand, optimizer

# %% [markdown]
# ## 5. Train
#
# One call trains and evaluates: `pipeline.train_and_evaluate` runs `speechclip.train.fit` (Adam, lr warmup then
# linear decay, gradient clipping at 4, fp16 autocast on a GPU; §2.2) on the cached features, validates on the
# dev split after every epoch, keeps the checkpoint with the best dev mean R@10 as `best.pt`, and finally
# evaluates that checkpoint on the test split. The run directory is resumable (`last.pt`); with `RESUME = False`
# this notebook starts it over so that re-running it gives the same numbers.
#
# One departure from the Base recipe: on the pocket preset the contrastive temperature is learnt (from 0.07), as
# in the Large recipe and every SpeechCLIP+ family, instead of fixed at 0.07. At the same seed and steps the fixed
# one reached speech→image R@1 1.8 and keyword top-1 25.5 % here, the learnt one 2.4 and 31.0 %
# (`benchmarks/README.md`, "Cascaded temperature"; `docs/reference.md`, offline stand-ins).
#
# A second one: the pocket preset trains the keyword families 1,500 steps, where parallel (notebook 10) trains
# 1,000. Watch the training curve below: the codebook uses few codes at first (code perplexity 12–16), keyword
# top-1 on dev sits near 22 % for hundreds of steps, and it rises only once the codebook's use opens up. At 1,000
# steps that rise had just begun. In a control with one thread, test keyword top-1 went from 31.0 % at 1,000 steps
# to 42.3 % at 1,500 (seed 7122; a larger learning rate or a warmer starting temperature in 1,000 steps did not do
# it; `benchmarks/README.md`, "Keyword families: 1,500 steps"). Notebook 20's CIF model gets the same 1,500 steps,
# so that comparison stays fair. The rise is not a sure thing: when the codebook's use nearly collapses early
# (perplexity under 10 around step 300), the model recovers late and ends lower. The sample output below is such
# a run.

# %%
if run_dir.exists() and not RESUME:
    shutil.rmtree(run_dir)  # a fresh run: old checkpoints would otherwise be resumed
torch.manual_seed(SEED)  # the branch's initial weights
result = pipeline.train_and_evaluate(exp, run_dir, resume=RESUME)
print(f"{result['steps']} steps: {result['train_seconds']:.0f} s training, "
      f"{result['wall_seconds']:.0f} s with validation and test")
print("best dev:", {k: round(v, 1) for k, v in result["dev_best"].items() if k.startswith("mean_")})
print("run files:", sorted(p.name for p in run_dir.iterdir()))

# %%
fig = plots.plot_training_curve(run_dir / "metrics.jsonl", title=f"Cascaded SpeechCLIP ({PRESET})")
save_figure(fig, figures / "11_training_curve.png")

# %% [markdown]
# ## 6. Results
#
# Retrieval uses the cascaded embedding (the CLIP text embedding of the keywords), evaluated exactly as in
# notebook 10.

# %%
best = load_model(run_dir / "best.pt", exp.speech_encoder, exp.clip).to(device).eval()
emb = embed_split(best, test_set, collate_features, cfg.data.eval_batch_size)
image_embeds, image_ids = dedup_images(emb["image_embeds"], emb["image_ids"])  # one row per test image
print("speech_embeds", check_shape(emb["speech_embeds"], (n_utts, D)))
print("image_embeds ", check_shape(image_embeds, (n_images, D)))
again = mutual_retrieval(emb["speech_embeds"], emb["image_embeds"], emb["image_ids"])
assert math.isclose(again["mean_R@10"], result["test"]["mean_R@10"], abs_tol=1e-4)  # same checkpoint, same split

# %%
with torch.no_grad():
    text_embeds = torch.cat([exp.clip.encode_text(emb["texts"][i:i + 256]).float().cpu()
                             for i in range(0, n_utts, 256)])
print("text_embeds  ", check_shape(text_embeds, (n_utts, D)))
topline = mutual_retrieval(text_embeds, emb["image_embeds"], emb["image_ids"], "text", "image")
print({k: round(v, 1) for k, v in topline.items()})

# %%
KS = ("R@1", "R@5", "R@10")
# Paper numbers: docs/paper_numbers.md. REAL Flickr8k (1k images, 5k utterances), recalled from
# the paper and not confirmed ("R"): a different corpus, pool size and backbone, not comparable one-to-one.
PAPER = {
    "paper: Cascaded Base, Flickr8k (real, R)": [8.2, 25.7, 37.2, 14.1, 34.9, 49.2],
    "paper: Cascaded Large, Flickr8k (real, R)": [14.7, 41.2, 55.1, 21.8, 52.0, 67.7],
}
table = {
    "this run (test)": [result["test"][f"{d}_{k}"] for d in ("speech2image", "image2speech") for k in KS],
    "untrained": [untrained[f"{d}_{k}"] for d in ("speech2image", "image2speech") for k in KS],
    "chance": [chance[d][k] for d in ("speech2image", "image2speech") for k in KS],
    "topline: pocket CLIP text↔image": [topline[f"{d}_{k}"] for d in ("text2image", "image2text")
                                        for k in KS],
    **PAPER,
}
columns = pd.MultiIndex.from_product([["speech→image", "image→speech"], KS])
pd.DataFrame(table, index=columns).T.round(1)

# %% [markdown]
# As in the paper, the cascaded model trails the parallel one (notebook 10): every utterance must pass through
# eight discrete subwords, a far narrower channel than a free 512-d vector. Compare each model with chance and
# the topline of this corpus; the paper's values are real Flickr8k and not comparable one-to-one.

# %%
fig = plots.plot_recall_bars({name: values[:3] for name, values in table.items() if name in
                              ("this run (test)", "chance", "topline: pocket CLIP text↔image")},
                             title=f"speech→image recall on {n_images} test images (topline: text→image)")
save_figure(fig, figures / f"{NB}_recall.png")

# %% [markdown]
# **Which words?** Each slot's selected subword beside the caption that was spoken (the first test utterances).
# Slots tend to specialise: some pick content words, some settle on one frequent subword for every utterance.

# %%
pd.set_option("display.max_colwidth", 60)
pd.DataFrame(keyword_table(best, emb, rows=8)).drop(columns="uid")

# %% [markdown]
# **Keyword hit rate (§7.2).** A slot *hits* an utterance when one of the five subwords nearest to its keyword is
# in the caption (references exclude padding, SOT and EOT, pitfall 16). The paper reports it per slot; ours sits
# beside the published Base and Large rates on Flickr8k (poster, "S"). Those come from an 8,112-subword codebook;
# ours has only a few dozen, so five *random* subwords already hit often: the dashed chance line is the floor a
# slot has to beat before its hit rate means anything.

# %%
per_slot = [result["test"][f"kw_{k + 1}"] for k in range(K)]
paper_kw = {"paper Base, Flickr8k (S)": [57.0, 25.6, 20.2, 5.0, 20.0, 26.5, 10.5, 16.6],
            "paper Large, Flickr8k (S)": [56.5, 19.6, 20.5, 37.5, 21.7, 34.6, 26.4, 44.7]}
kw_chance = result["test"].get("kw_chance")  # 5 random subwords of this codebook: the floor to beat
fig = plots.plot_keyword_hits(per_slot, paper_kw, chance=kw_chance)
save_figure(fig, figures / "11_keyword_hits.png")
print(f"mean hit rate: this run {result['test']['kw_avg']:.1f}% (chance {kw_chance or float('nan'):.1f}%, "
      f"V = {V}); paper Base 22.7%, Large 32.7% (Flickr8k, V = 8,112)")

# %% [markdown]
# **Where do the keywords listen?** The attention block's keyword→frame weights for one test utterance, with the
# word boundaries of its CTM alignment (white: word start, cyan dotted: word end).

# %%
i = 0
item = collate_features([test_set[i]])
with torch.no_grad():
    one = best.encode_features(item["hidden_states"].to(device), item["feat_lens"].to(device),
                               need_weights=True)
attention = one["attention"][0].cpu()
print("attention", check_shape(attention, (K, int(item["feat_lens"][0]))))
words = exp.clip.decode_vocab(one["keyword_ids"][0].cpu())
alignment = exp.datasets["test"][i]["alignment"]
fig = plots.plot_keyword_attention(attention, alignment, words, title=f'"{emb["texts"][i]}"',
                                   frame_rate=exp.speech_encoder.frame_rate)
save_figure(fig, figures / "11_keyword_attention.png")

# %%
path_of = {u.image_id: u.image_path for u in exp.datasets["test"].utterances}
scores = emb["speech_embeds"] @ image_embeds.T  # (N_utts, N_images) cosine
picks = list(range(0, n_utts, max(1, n_utts // 4)))[:4]
top = scores[picks].topk(min(5, n_images), dim=1)
ranked = [[path_of[int(image_ids[c])] for c in row] for row in top.indices.tolist()]
hits = [[int(image_ids[c]) == int(emb["image_ids"][q]) for c in row] for q, row in zip(picks, top.indices.tolist())]
fig = plots.plot_retrievals([emb["texts"][q] for q in picks], ranked, hits, top.values.tolist(),
                            title="speech → image: the spoken caption (text shown) and its top-5 test images")
save_figure(fig, figures / f"{NB}_retrievals.png", dpi=110)

# %%
n_show = min(20, n_images)
first_utt = [emb["image_ids"].tolist().index(int(i)) for i in image_ids[:n_show]]  # one utterance per image
sim = emb["speech_embeds"][first_utt] @ image_embeds[:n_show].T
names = {u.image_id: u.image_name for u in exp.datasets["test"].utterances}
fig = plots.plot_similarity_heatmap(sim, [emb["texts"][i] for i in first_utt],
                                    [names[int(i)] for i in image_ids[:n_show]], targets=range(n_show),
                                    title="speech–image cosine similarity (dots: true image, x: top-1)")
save_figure(fig, figures / f"{NB}_similarity.png")
print(f"top-1 correct on this block: {int((sim.argmax(1) == torch.arange(n_show)).sum())} / {n_show}")

# %% [markdown]
# **The cascaded topline.** A cascaded model can at best say the caption's content words, so the topline is
# CLIP's text→image retrieval when each caption is reduced to its content words in spoken order
# ("big red circle left square"). The pocket CLIP is trained on such keyword bags beside the full captions
# (`pocket_clip.keyword_captions`), as the real CLIP read terse alt-text as well as sentences.
# The low-chance keyword measure `kw_top1_avg` asks whether a slot's own pick (its nearest subword) is one of
# the caption's content words; its chance level `kw_top1_chance` is about 12%, where the reference top-5
# measure's is about 60% on this small vocabulary. Chance is not the only floor: `kw_top1_prior` is the hit rate of
# a slot that ignores the speech and always names the split's most frequent content word. Six size words ("big",
# "tiny", "large", ...) each occur in about a third of the captions, so that constant slot scores about three times
# chance without hearing anything.

# %%
from speechclip.probes import keyword_topline

cascaded_topline = keyword_topline(exp.clip, cfg.data.root, "test")
print("keyword-bag text→image:", {k: round(cascaded_topline[f"text2image_{k}"], 1) for k in ("R@1", "R@5", "R@10")},
      "| e.g.", cascaded_topline["example"])
print({k: round(result["test"][k], 1) for k in ("kw_top1_avg", "kw_top1_chance", "kw_top1_prior", "kw_avg", "kw_chance",
                                                 "kw_prior")})

# %% [markdown]
# Sample output (`PRESET="pocket"`, 1,500 steps, seed 7122, held-out test voices): keyword-bag text→image R@1 / 5 / 10
# = 50.2 / 96.0 / 99.0 %<!-- 11_cascaded/cascaded_topline.text2image_R@1 11_cascaded/cascaded_topline.text2image_R@5 11_cascaded/cascaded_topline.text2image_R@10 -->
# (full captions 50.0 / 96.1 / 99.2 %<!-- 11_cascaded/clip_topline.text2image_R@1 11_cascaded/clip_topline.text2image_R@5 11_cascaded/clip_topline.text2image_R@10 -->),
# so the pocket CLIP reads a bag of keywords as well as a sentence and the cascaded design is not what limits this
# model. The trained model: speech→image R@1 / 5 / 10 =
# 10.3 / 32.2 / 45.0 %<!-- 11_cascaded/test.speech2image_R@1 11_cascaded/test.speech2image_R@5 11_cascaded/test.speech2image_R@10 --> (51<!-- unrecorded --> times
# chance), image→speech 12.6 / 46.8 / 62.2 %<!-- 11_cascaded/test.image2speech_R@1 11_cascaded/test.image2speech_R@5 11_cascaded/test.image2speech_R@10 -->;
# a slot's own pick is a content word of the caption 53.2 %<!-- 11_cascaded/test.kw_top1_avg --> of the time against
# 12.2 %<!-- 11_cascaded/test.kw_top1_chance --> by chance and 34.0 %<!-- 11_cascaded/test.kw_top1_prior --> for a slot that always says "big",
# and the reference top-5 hit rate is 82.4 %<!-- 11_cascaded/test.kw_avg --> against 60.7 %<!-- 11_cascaded/test.kw_chance --> by chance. So the
# slots name what was said, well above a constant, and the keyword sequence they make retrieves the image. The
# cascaded model trails the parallel one (notebook 10) by a factor of about 2.5 at R@1<!-- unrecorded -->, near the papers'
# factor of about three: snapping each keyword onto one subword throws away what the parallel model keeps in a
# continuous vector. (Our parallel branch has three transformer layers where the papers have one; with one it
# reached 8.9 %<!-- unrecorded -->.)
#
# The block's eight heads are what lifted this model (section 1, "The idea"): with the recipe's one head this seed gave R@1
# 1.9 %<!-- unrecorded --> and keyword top-1 30.9 %<!-- unrecorded -->, under the constant. Read slot by slot (`benchmarks/keyword_slots.py`), that run's
# slots had settled on words rarely in the caption (relation words such as "over" and "below", or "at" and
# ":"<!-- unrecorded -->), a private code CLIP reads, where stronger runs' slots named colours, sizes and shapes; with one head
# a run fell into that outcome or the stronger one by its random draws (keyword top-1 30.9 to 43.5 %<!-- unrecorded --> over three
# seeds). With eight heads the same three seeds (`speechclip.findings`) gave R@1 6.6 ± 0.3 %<!-- unrecorded --> and keyword
# top-1 49.6 ± 2.3 %<!-- unrecorded -->. A codebook in the loop still makes one run a sample: read the spread over seeds in
# notebook 30 and the README.

# %% [markdown]
# Our decisions on the official code's pitfalls 1, 2, 3, 7, 8, 11, 12, 15, 16 and 18: [docs/reference.md](../docs/reference.md#decisions).

# %% [markdown]
# ## Record the numbers

# %%
record = {
    "notebook": "11_cascaded", "preset": PRESET, "family": cfg.model.family, "device": str(device),
    "steps": result["steps"], "max_steps": cfg.train.max_steps, "trainable_params": counted,
    "test": result["test"], "dev_best": result["dev_best"], "untrained_test": untrained,
    "chance": chance, "clip_topline": topline, "cascaded_topline": cascaded_topline,
    "keyword_hit_rate": {k: v for k, v in result["test"].items() if k.startswith("kw_")},
    "codebook_size": V,
    "wall_seconds": {"prepare": round(prepare_seconds, 1), "train": result["train_seconds"],
                     "train_and_evaluate": result["wall_seconds"],
                     "notebook": round(time.perf_counter() - t_start, 1)},
}
out = save_metrics("11_cascaded", record, ARTIFACTS_DIR)
print(out, "| figures:", sorted(p.name for p in figures.glob("11_*.png")))

# %% [markdown]
# ## Summary
#
# - Cascaded SpeechCLIP compresses an utterance into K = 8 keyword tokens, batch-normalises them to CLIP's subword
#   statistics and snaps each onto a real CLIP subword with a cosine straight-through quantiser.
# - The frozen CLIP text encoder reads the keywords as a sentence, so the speech embedding is a text embedding:
#   the model can be inspected word by word (keyword table, hit rate, attention over the spoken words).
# - The discrete bottleneck costs retrieval accuracy against the parallel model, as in the paper; hit rates must
#   be read against what frequent subwords give for free.
#
# ## Exercises
#
# 1. Train with `{"model.bn_init": "reference"}` (the official permuted initialisation). Do recall and the keyword
#    hit rate change, or does training undo the permutation?
# 2. Replace the straight-through estimator by the plain one-hot (`hard` only) in a copy of
#    `speechclip.vq.straight_through`. What happens to the gradient reaching the keyword tokens, and to training?
# 3. Count how many distinct subwords each slot uses over the test set. Which slots collapse onto a single
#    subword, and does their hit rate reflect anything the speaker said?

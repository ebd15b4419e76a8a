"""Typed configuration for every model family, with named presets that override only what differs.

Defaults are the paper's values (docs/reference.md §§1-5, from the official code); presets change only what a
scale or model family needs. Unknown keys raise, so a typo in an override never passes silently.
Introduced in notebooks/00_setup_and_data.ipynb and used everywhere after it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("parallel", "cascaded", "cascaded_plus", "hybrid", "hybrid_plus")


@dataclass
class DataConfig:
    root: str = "data/synthetic_cpu"  # a Flickr8k-layout folder (real or synthetic) or a SpokenCOCO root
    format: str = "flickr8k"  # "flickr8k" | "spokencoco"
    sample_rate: int = 16000  # HuBERT's rate (§1.2)
    max_audio_seconds: float = 6.4  # train-time random crop to 102,400 samples (§1.2)
    normalize_waveform: bool = False  # dataset-level utterance LayerNorm: off in SpeechCLIP, on in SpeechCLIP+ base (§1.2)
    batch_size: int = 256  # total across GPUs (§2.2)
    eval_batch_size: int = 64
    num_workers: int = 0
    on_error: str = "raise"  # "raise" | "skip" (skips are counted and reported, never silent)


@dataclass
class SpeechEncoderConfig:
    name: str = "facebook/hubert-base-ls960"  # hub name, a local save_pretrained folder, or "pocket"
    normalize_hiddenstates: bool = False  # parameter-free LN per layer before the weighted sum: large only (§1.1)
    finetune_top_layers: int = 0  # 0 = fully frozen as in the paper; >0 only for the offline pocket option
    frame_pool: int = 1  # average k frames: 1 = HuBERT's 50 Hz as in the paper; pocket 4 (12.5 Hz, CPU budget)
    # arithmetic of the frozen forward pass (speech_encoder.frozen_autocast): "auto" = bf16 autocast on a CPU with
    # native bf16 (AVX512-BF16 or AMX; the pocket HuBERT's pass 1.4x faster on the 2-core machine), fp32 on other
    # CPUs and on CUDA; or "fp32", "bf16", "fp16". Finetuned top layers follow train.precision instead.
    precision: str = "auto"


@dataclass
class ClipConfig:
    name: str = "ViT-B-32"  # open_clip model name, or "pocket"
    pretrained: str = "openai"  # open_clip tag or a local checkpoint path (OpenAI weights need QuickGELU)
    reduce_vocab: bool = True  # keep only the corpus's subwords, ordered by frequency (§1.3, §4.4)


@dataclass
class ModelConfig:
    family: str = "parallel"  # one of FAMILIES
    # parallel branch (§3): CLS + one post-LN transformer layer + final LN + Linear(D_a -> D)
    parallel_layers: int = 1
    # Average every k frames of the layer sum before the parallel branch: 1 = the encoder's own rate as in the paper;
    # pocket parallel 2 (the cached 12.5 Hz frames become 6.25 Hz, a CPU budget lever). Parallel only: CIF and the
    # keyword attention plots time frames at the encoder's rate.
    branch_pool: int = 1
    parallel_heads: int = 8
    ffn_mult: int = 4  # FFN width = 4 * d_model (3072 base, 4096 large)
    dropout: float = 0.1
    # cascaded branch (§4): K CLS tokens + one MHA+LN block, BN, cosine VQ, frozen CLIP text encoder
    num_keywords: int = 8
    cascaded_heads: int = 1
    vq_temperature: float = 0.1  # fixed softmax temperature of the straight-through VQ (§4.3)
    bn_init: str = "intended"  # "intended" (per-dimension stats) | "reference" (the official permuted init, §4.2)
    # "all": the VQ picks from every subword of the corpus's captions (the paper) | "content": not from the function
    # words of evaluation.FUNCTION_WORDS nor punctuation (an offline control; benchmarks/README.md, "Keyword codebook")
    keyword_vocab: str = "all"
    # loss (§2.1)
    temperature_init: float = 0.07
    temperature_trainable: bool = False  # fixed for base, learnable for large
    feature_norm: str = "none"  # "none" as in the paper | "utterance": CMVN of the layer sum (pocket preset)
    # SpecAugment-style masking of the layer sum while training (not in the papers, which train on clean frozen
    # features): each frame the branch reads starts a masked span of feature_mask_time_span frames with probability
    # feature_mask_time_prob, each channel one of feature_mask_channel_span channels with feature_mask_channel_prob;
    # masked values are set to 0 (the mean, after utterance normalisation). 0 = off.
    feature_mask_time_prob: float = 0.0
    feature_mask_time_span: int = 2
    feature_mask_channel_prob: float = 0.0
    feature_mask_channel_span: int = 8
    cascaded_weight: float = 1.0
    parallel_weight: float = 1.0
    # SpeechCLIP+ (§5): projections, the hybrids' shared block, which embedding retrieval reads
    keyword_projection: str = "linear"  # "linear" (Base) | "mlp": D_a -> D_a -> D_t, SpeechCLIP+ Large (§5.3)
    parallel_projection: str = "linear"  # hybrids: "mlp" only in Large Flickr Hybrid (§5.4)
    shared_block: str = "attention"  # hybrid: "attention" (MHA+LN) | "transformer" (Large COCO Hybrid, §5.4)
    retrieval_branch: str = "auto"  # "auto": the only embedding | "parallel" | "cascaded" (hybrids, §5.4, §5.5)
    # CIF (§5.1, §5.2), used by cascaded_plus / hybrid_plus
    cif_threshold: float = 1.0  # beta: one keyword per unit of integrated weight
    cif_conv_layers: int = 1  # 2 in Large COCO Cascaded+
    cif_conv_width: int = 3  # 5 in Large COCO Cascaded+; odd
    cif_dropout: float = 0.1  # the official code uses 0.5 by accident (pitfall 5)
    cif_max_tokens: int = 75  # SOT + 75 + EOT fill CLIP's 77 positions
    cif_tail_threshold: float = 0.5  # at evaluation a leftover weight >= 0.5 fires one more keyword
    quantity_target: str = "frames"  # "frames": round(T / cif_frames_per_token) | "subwords" | "content_words"
    cif_frames_per_token: int = 20  # one keyword per 20 HuBERT frames = 0.4 s; counted at 50 Hz whatever frame_pool
    quantity_weight: float = 0.25
    cif_scaling_steps: int = 5000  # alpha is rescaled to the target count during the first steps (= warm-up)


@dataclass
class TrainConfig:
    lr: float = 1e-4  # Adam (§2.2)
    weight_decay: float = 1e-6
    warmup_steps: int = 5000
    max_steps: int = 50000
    final_lr_ratio: float = 1e-4  # linear decay to lr * 1e-4 at max_steps
    grad_clip: float = 4.0
    precision: str = "auto"  # "auto" = fp16 autocast on CUDA, fp32 on CPU; or "fp32", "fp16", "bf16" anywhere
    device: str = "auto"  # "auto" = CUDA (this process's LOCAL_RANK) when available, else CPU; or "cpu", "cuda:1"
    seed: int = 7122
    eval_every: int = 0  # optimizer steps between validations; 0 = once per epoch
    log_every: int = 10
    checkpoint_every: int = 0  # optimizer steps between resumable checkpoints; 0 = end of each epoch only
    cache_features: bool = True  # run the frozen speech encoder once per corpus and train on its outputs


@dataclass
class PocketHubertConfig:
    """A HuBERT small enough to pretrain on a 2-core CPU, same recipe as HuBERT iteration one."""

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    conv_dim: tuple = (32, 32, 64, 64, 64, 64, 64)
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)  # HuBERT's kernels and strides: 320 samples per frame
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    num_clusters: int = 100  # k-means on MFCCs, HuBERT iteration one
    mask_prob: float = 0.08  # fraction of frames that start a masked span (HuBERT: 0.08, span 10)
    mask_length: int = 10
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    max_seconds: float = 3.0
    crop_multiple: int = 1  # batch crop length (the shortest utterance's, at most max_seconds) rounded down to a
    # multiple of this many frames: 1 = HuBERT's exact cut; > 1 repeats tensor shapes, which oneDNN's CPU kernels reuse
    speed_perturb: tuple = ()  # speeds in percent besides 100, e.g. (90, 110); () = none (the HuBERT recipe)
    unmasked_weight: float = 0.0  # HuBERT's loss on unmasked frames (1 - alpha in its paper); 0 = masked only
    second_iteration_steps: int = 0  # > 0: HuBERT's iteration two after `steps`: k-means on this model's layer
    second_iteration_layer: int = 2  # ... `second_iteration_layer` gives the new targets (continued, not restarted)
    precision: str = "fp32"  # pretraining arithmetic: "fp32", "bf16" (autocast) or "auto" (bf16 on a CPU with bf16 in
    # hardware, fp32 elsewhere); HuBERT itself pretrained in fp16 mixed precision on GPUs
    seed: int = 0


@dataclass
class PocketClipConfig:
    """A CLIP small enough to train on a 2-core CPU, with the real CLIP BPE tokenizer."""

    embed_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128  # = embed_dim so keyword and parallel projections share one width, as in ViT-B/32
    text_layers: int = 4
    heads: int = 4
    context_length: int = 77
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    keyword_captions: bool = False  # also train on each caption's content words alone (pocket_clip._load_pairs)
    seed: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    speech: SpeechEncoderConfig = field(default_factory=SpeechEncoderConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pocket_hubert: PocketHubertConfig = field(default_factory=PocketHubertConfig)
    pocket_clip: PocketClipConfig = field(default_factory=PocketClipConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str) -> str:
        """Short stable hash of the named sections (all when none), used as a cache key."""
        d = self.to_dict()
        picked = {k: d[k] for k in (sections or d.keys())}
        return hashlib.sha1(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:12]


# Each preset overrides only what differs from the paper's base defaults above.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # HuBERT Base + ViT-B/32 on Flickr8k (§3, §4.6)
    "large": {  # HuBERT Large + ViT-L/14 (§4.6)
        "speech": {"name": "facebook/hubert-large-ll60k", "normalize_hiddenstates": True},
        "clip": {"name": "ViT-L-14"},
        "model": {"temperature_trainable": True},
    },
    "pocket": {  # offline default: synthetic corpus, pocket backbones, CPU-sized schedule
        "data": {"root": "data/synthetic_cpu", "batch_size": 64},
        # 4 frames averaged (12.5 Hz): a branch step costs a quarter, so the CPU budget buys 4x the epochs
        "speech": {"name": "pocket", "frame_pool": 4},
        "clip": {"name": "pocket", "pretrained": ""},
        "pocket_clip": {"keyword_captions": True},  # the text tower must read a cascaded model's bag of keywords
        # HuBERT scores masked frames only; with about one epoch of pretraining that leaves the pocket model near
        # chance, and predicting the units of unmasked frames too lifts the word probe on new voices from 71% to
        # 82% at no extra cost (benchmarks/README.md, "Pocket HuBERT recipes"). Twice HuBERT's pocket schedule at
        # twice the learning rate lifts parallel R@1 by a third ("Pocket HuBERT: longer pretraining"), paid for by
        # bf16 autocast where the CPU has it and crops rounded to 16 frames: a step 1.45x faster on one thread.
        # Each crop is played at 0.8-1.2 times speed (Kaldi-style speed perturbation, pitch and formants with it), at
        # no time cost; its gain is within the draw-to-draw spread of the pocket HuBERT: 26.5 +/- 0.9 and 25.1 +/- 0.8
        # over three seeds on two draws with it, 25.2 +/- 0.9 and 24.8 +/- 1.2 on two without ("Speed perturbation")
        "pocket_hubert": {"unmasked_weight": 0.5, "steps": 2000, "lr": 2e-3, "precision": "auto", "crop_multiple": 16,
                          "speed_perturb": (80, 90, 110, 120)},
        "model": {"feature_norm": "utterance"},  # CMVN of the pocket HuBERT features (model.utterance_norm)
        "train": {"warmup_steps": 40, "max_steps": 1000, "lr": 1e-3},  # about 8.5 epochs: minutes on 2 cores
    },
    "smoke": {  # seconds on a CPU: tests and papermill smoke runs
        "data": {"root": "data/synthetic_smoke", "batch_size": 16, "eval_batch_size": 16},
        "speech": {"name": "pocket", "frame_pool": 4},
        "clip": {"name": "pocket", "pretrained": ""},
        "train": {"warmup_steps": 2, "max_steps": 6, "lr": 5e-4, "log_every": 1},
        "pocket_hubert": {"steps": 20, "num_clusters": 20, "batch_size": 4, "unmasked_weight": 0.5},
        "pocket_clip": {"epochs": 2, "batch_size": 16, "keyword_captions": True},
    },
}

# Per-family differences from the parallel defaults (§3-§5), as the reference's Base configurations set them.
FAMILY_OVERRIDES: dict[str, dict[str, Any]] = {
    "parallel": {},
    "cascaded": {},
    # SpeechCLIP+ Base (§5.6): waveform normalisation on, learnable temperature everywhere
    "cascaded_plus": {"data": {"normalize_waveform": True}, "model": {"temperature_trainable": True}},
    "hybrid": {"data": {"normalize_waveform": True},
               "model": {"temperature_trainable": True, "retrieval_branch": "cascaded"}},
    "hybrid_plus": {"data": {"normalize_waveform": True},
                    "model": {"temperature_trainable": True, "cascaded_heads": 8, "retrieval_branch": "parallel"}},
}

# The pocket HuBERT normalises every waveform itself (do_normalize), so the dataset-level normalisation would do
# nothing but split the feature cache; off for the offline presets.
_POCKET_PLUS = {"data": {"normalize_waveform": False}}
# Where a preset departs from its family's row above; applied after it. SpeechCLIP+ Large is Large Flickr (§5.6):
# no waveform normalisation, MLP keyword projections, hidden-state LayerNorm only for Hybrid. The reference's
# gradient accumulation (Hybrid+ 128 x 2) is not implemented: fit takes one batch per step.
PRESET_FAMILY_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("large", "cascaded_plus"): {"data": {"normalize_waveform": False, "batch_size": 128},
                                 "speech": {"normalize_hiddenstates": False},
                                 "model": {"cascaded_heads": 8, "keyword_projection": "mlp"}},
    ("large", "hybrid"): {"data": {"normalize_waveform": False},
                          "model": {"keyword_projection": "mlp", "parallel_projection": "mlp"}},
    ("large", "hybrid_plus"): {"data": {"normalize_waveform": False, "batch_size": 128},
                               "speech": {"normalize_hiddenstates": False},
                               "model": {"keyword_projection": "mlp", "cascaded_weight": 1.5, "parallel_weight": 0.5,
                                         "retrieval_branch": "cascaded"}},
    # Cascaded on the pocket preset learns its temperature, as the Large recipe and every SpeechCLIP+ family do: with
    # the Base recipe's fixed 0.07 the pocket model reached speech->image R@1 1.8 and keyword top-1 25.5 in the
    # tutorial run; learnable, 2.4 and 31.0 at the same seed and steps (benchmarks/README.md, "cascaded temperature")
    # The keyword families (cascaded, Cascaded+) train 1,500 steps on the pocket preset, the others 1,000: their
    # codebook use opens up only after 400-700 steps (code perplexity 13 -> 24) and at 1,000 steps their dev curves
    # still climbed steeply. Cascaded, seed 7122: 1,000 steps R@1 2.4, keyword top-1 31.0 (2.5x chance); 1,500 steps
    # 5.3 and 42.3 (3.5x); 2,000 steps 4.6 and 44.4 (benchmarks/README.md, "Keyword families: 1,500 steps").
    # Over three seeds (speechclip.findings) the gain was smaller: keyword top-1 37.7 -> 38.5 for cascaded,
    # 24.0 -> 32.0 for Cascaded+.
    # Both keyword families get the same schedule, so that notebook 20's CIF against fixed K stays a fair comparison.
    # Their keyword attention block has eight heads, as in Large Cascaded+ and in Base and Large Hybrid+ (the Base
    # cascaded and Cascaded+ recipes have one). With one head, cascaded runs fell into one of two outcomes by the
    # draw (keyword top-1 30.9 to 43.5 over three seeds, the tutorial's seed the weakest); with eight, the same
    # three seeds all reached the strong one: R@1 3.2 +/- 1.1 -> 6.6 +/- 0.3, keyword top-1 39.0 +/- 7.0 -> 49.6 +/- 2.3
    # (benchmarks/README.md, "Keyword attention heads").
    ("pocket", "cascaded"): {"model": {"temperature_trainable": True, "cascaded_heads": 8}, "train": {"max_steps": 1500}},
    # Parallel on the pocket preset has three transformer layers, where the papers have one, and averages every two
    # cached frames (6.25 Hz). With one layer it underfits the pocket features (train loss 1.35 after 1,000 steps)
    # and reached test R@1 8.9, 18% of the pocket CLIP's topline; two layers 15.3 (31%), three 16.8 (34%), same seed
    # and steps (benchmarks/README.md, "Parallel branch depth"). Three layers on frames pooled twice reached the
    # two-layer 12.5 Hz result (15.3) in 185 s of training instead of 251 s; two layers pooled twice only 13.2.
    # The hybrids keep their one shared block at 12.5 Hz (as the papers, and CIF needs the frame rate).
    # It also learns at twice the pocket preset's rate (2e-3): over seeds 7122-7124 test R@1 15.0 +/- 0.6 -> 16.2 +/-
    # 0.4 at the same steps; masking the features (SpecAugment) or no dropout did not help (benchmarks/README.md,
    # "Parallel: learning rate, feature masking, dropout"). The hybrids keep 1e-3.
    ("pocket", "parallel"): {"model": {"parallel_layers": 3, "branch_pool": 2}, "train": {"lr": 2e-3}},
    ("pocket", "hybrid"): _POCKET_PLUS,
    ("smoke", "hybrid"): _POCKET_PLUS,
    # CIF on the pocket's 12.5 Hz frames keeps the reference's time-based target, one keyword per 0.4 s (5 pooled
    # frames: cif_frames_per_token counts 50 Hz frames). The synthetic captions (about 4 s) then ask for about 10
    # keywords, between their 8 content words and 13 subwords, and a keyword still integrates about 5 frames.
    # The reference rescales alpha for 5,000 of 50,000 steps; the offline schedules keep that tenth.
    ("pocket", "cascaded_plus"): {**_POCKET_PLUS, "model": {"cif_scaling_steps": 150, "cascaded_heads": 8},
                                  "train": {"max_steps": 1500}},
    ("pocket", "hybrid_plus"): {**_POCKET_PLUS, "model": {"cif_scaling_steps": 100}},
    **{("smoke", f): {**_POCKET_PLUS, "model": {"cif_scaling_steps": 3}} for f in ("cascaded_plus", "hybrid_plus")},
}


def _merge(obj: Any, overrides: dict[str, Any], path: str = "") -> None:
    for key, value in overrides.items():
        if not hasattr(obj, key) or key.startswith("_"):
            valid = ", ".join(f.name for f in dataclasses.fields(obj))
            raise KeyError(f"unknown config key '{path}{key}'; valid keys here: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise TypeError(f"config section '{path}{key}' must be a dict, got {type(value).__name__}")
            _merge(current, value, f"{path}{key}.")
        elif isinstance(value, dict):
            _refuse_too_deep(f"{path}{key}", value)
        else:
            setattr(obj, key, tuple(value) if isinstance(current, tuple) else value)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn {"train.lr": 1e-3} into {"train": {"lr": 1e-3}}; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})
            out[head].update(_nest({rest: value}))
        elif isinstance(value, dict):
            out.setdefault(head, {}).update(value)
        else:
            out[head] = value
    return out


def load_config(preset: str = "pocket", family: str = "parallel", overrides: dict | None = None, **kw) -> Config:
    """Build a Config: paper defaults, the preset, the model family, the family at that size, explicit overrides.

    Overrides may be nested dicts or dotted keys: load_config("smoke", "cascaded", {"train.max_steps": 3}).
    """
    if preset not in PRESETS:
        raise KeyError(f"unknown preset '{preset}'; choose one of {sorted(PRESETS)}")
    if family not in FAMILIES:
        raise KeyError(f"unknown model family '{family}'; choose one of {FAMILIES}")
    cfg = Config()
    _merge(cfg, copy.deepcopy(PRESETS[preset]))
    _merge(cfg, copy.deepcopy(FAMILY_OVERRIDES[family]))
    _merge(cfg, copy.deepcopy(PRESET_FAMILY_OVERRIDES.get((preset, family), {})))
    cfg.model.family = family
    _merge(cfg, _nest({**(overrides or {}), **kw}))
    validate_config(cfg)
    if cfg.model.family != family:  # the family's own overrides above would be missing
        raise ValueError(f"model.family={cfg.model.family!r} in the overrides disagrees with family={family!r}; "
                         f"pass the family as load_config(preset, {cfg.model.family!r}) instead")
    return cfg


def config_from_dict(d: dict) -> Config:
    """Rebuild a Config saved with Config.to_dict() (checkpoints, metrics files)."""
    cfg = Config()
    _merge(cfg, d)
    return validate_config(cfg)


# ---- validation: every value is checked once the config is built, so a typo fails here, not mid-run ----

CHOICES: dict[str, tuple] = {
    "data.format": ("flickr8k", "spokencoco"),
    "data.on_error": ("raise", "skip"),
    "model.family": FAMILIES,
    "model.bn_init": ("intended", "reference"),
    "model.keyword_vocab": ("all", "content"),
    "model.feature_norm": ("none", "utterance"),
    "model.keyword_projection": ("linear", "mlp"),
    "model.parallel_projection": ("linear", "mlp"),
    "model.shared_block": ("attention", "transformer"),
    "model.retrieval_branch": ("auto", "parallel", "cascaded"),
    "model.quantity_target": ("frames", "subwords", "content_words"),
    "train.precision": ("auto", "fp32", "fp16", "bf16"),
    "speech.precision": ("auto", "fp32", "fp16", "bf16"),
    "pocket_hubert.precision": ("auto", "fp32", "bf16"),
}
# (lowest allowed, lowest is allowed itself): a zero batch or log interval would divide by zero mid-run.
LIMITS: dict[str, tuple[float, bool]] = {
    "data.sample_rate": (0, False), "data.max_audio_seconds": (0, False), "data.batch_size": (1, True),
    "data.eval_batch_size": (1, True), "data.num_workers": (0, True),
    "train.lr": (0, False), "train.weight_decay": (0, True), "train.warmup_steps": (0, True),
    "train.max_steps": (1, True), "train.final_lr_ratio": (0, True), "train.grad_clip": (0, False),
    "train.eval_every": (0, True), "train.log_every": (1, True), "train.checkpoint_every": (0, True),
    "model.dropout": (0, True), "model.num_keywords": (1, True), "model.temperature_init": (0, False),
    "model.vq_temperature": (0, False), "model.parallel_heads": (1, True), "model.parallel_layers": (1, True),
    "model.branch_pool": (1, True), "model.feature_mask_time_prob": (0, True),
    "model.feature_mask_time_span": (1, True), "model.feature_mask_channel_prob": (0, True),
    "model.feature_mask_channel_span": (1, True),
    "speech.frame_pool": (1, True), "model.cascaded_heads": (1, True),
    "model.cif_threshold": (0, False), "model.cif_conv_layers": (1, True), "model.cif_conv_width": (1, True),
    "model.cif_dropout": (0, True), "model.cif_max_tokens": (1, True), "model.cif_tail_threshold": (0, True),
    "model.cif_frames_per_token": (1, True), "model.quantity_weight": (0, True), "model.cif_scaling_steps": (0, True),
    "pocket_hubert.unmasked_weight": (0, True), "pocket_hubert.second_iteration_steps": (0, True),
    "pocket_hubert.crop_multiple": (1, True),
}
# Families with each embedding: a hybrid can read either for retrieval, the others only their own.
HAS_PARALLEL = ("parallel", "hybrid", "hybrid_plus")
HAS_CIF = ("cascaded_plus", "hybrid_plus")
# Field annotations are strings (from __future__ import annotations); other annotations are not type-checked.
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "tuple": (tuple,)}


def _refuse_too_deep(key: str, value: dict) -> None:
    inner = next(iter(value), "?")
    raise KeyError(f"config key '{key}' is a value, not a section: '{key}.{inner}' goes one level too deep; "
                   f"write '{key}': <value>")


def _check_value(key: str, value: Any, annotation: str) -> None:
    wanted = _TYPES.get(annotation)
    if wanted and (not isinstance(value, wanted) or (isinstance(value, bool) and annotation != "bool")):
        raise TypeError(f"config value {key}={value!r} must be of type {annotation}, got {type(value).__name__}")
    if annotation == "tuple" and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"config value {key}={value!r} must be a list of integers")
    if key in CHOICES and value not in CHOICES[key]:
        raise ValueError(f"config value {key}={value!r} is not one of {CHOICES[key]}")
    if key in LIMITS:
        low, inclusive = LIMITS[key]
        if value < low or (value == low and not inclusive):
            raise ValueError(f"config value {key}={value!r} must be {'>=' if inclusive else '>'} {low}")


def validate_config(cfg: Config) -> Config:
    """Check every value's type, the allowed strings and the ranges; returns cfg. Raises TypeError/ValueError."""
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        for f in dataclasses.fields(part):
            _check_value(f"{section.name}.{f.name}", getattr(part, f.name), f.type)
    m = cfg.model
    if m.retrieval_branch == "parallel" and m.family not in HAS_PARALLEL or \
            m.retrieval_branch == "cascaded" and m.family == "parallel":
        raise ValueError(f"model.retrieval_branch={m.retrieval_branch!r}: family {m.family!r} has no such embedding")
    if m.branch_pool > 1 and m.family != "parallel":
        raise ValueError(f"model.branch_pool={m.branch_pool} is for family 'parallel' only, not {m.family!r}: CIF's "
                         "keyword count and the keyword attention plots read frames at the encoder's rate; "
                         "pool in the encoder instead (speech.frame_pool)")
    h = cfg.pocket_hubert
    if h.unmasked_weight >= 1:
        raise ValueError(f"pocket_hubert.unmasked_weight={h.unmasked_weight} must be below 1: the masked loss is the recipe")
    if any(not 50 <= p <= 200 or p == 100 for p in h.speed_perturb):
        raise ValueError(f"pocket_hubert.speed_perturb={list(h.speed_perturb)}: speeds in percent between 50 and 200, "
                         "other than 100 (each crop is also kept at its own speed), e.g. [90, 110]")
    if h.second_iteration_steps and not 0 <= h.second_iteration_layer <= h.num_layers:
        raise ValueError(f"pocket_hubert.second_iteration_layer={h.second_iteration_layer}: the model has hidden "
                         f"states 0..{h.num_layers}")
    if m.cif_conv_width % 2 == 0:
        raise ValueError(f"model.cif_conv_width={m.cif_conv_width} must be odd, so alpha stays aligned with frames")
    return cfg

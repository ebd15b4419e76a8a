"""Frozen HuBERT behind one loader (hub name, local folder or "pocket"), plus the learnable layer weighting.

§1.1 of docs/reference.md; introduced in notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import HubertConfig, HubertModel

from speechclip.cpu import cpu_has_native_bf16
from speechclip.corpora import WeightsError

__all__ = ["SpeechEncoder", "WeightedLayerSum", "load_speech_encoder", "conv_output_lengths"]

# HuBERT Large (fairseq hubert_large_ll60k): pre-LN encoder, LayerNorm in every conv layer, conv biases (§1.1).
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
              feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)


def conv_output_lengths(wav_lens: torch.Tensor, kernels, strides) -> torch.Tensor:
    """Exact frame count of the conv front-end: floor((S - k) / s) + 1 per layer (pitfall 9, §1.1)."""
    lens = wav_lens.long()
    for k, s in zip(kernels, strides):
        lens = torch.div(lens - k, s, rounding_mode="floor") + 1
    return lens.clamp(min=0)


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def frozen_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the frozen forward pass (speech.precision) on this device; None = plain fp32.

    "auto" is bf16 on a CPU that has it in hardware and fp32 everywhere else: on the 2-core tutorial machine
    (AVX512-BF16) the pocket HuBERT runs over the dev utterances 1.4x faster, with hidden states within 0.7%
    (relative norm) of fp32's (`benchmarks/feature_batch.py --precision fp32 auto`). On a CPU without it bf16 is emulated and
    slower than fp32, so "auto" keeps fp32 there (the features, and so the results, then differ in the last digits
    from a bf16 machine's). On CUDA "auto" stays fp32, the paper's frozen features.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class SpeechEncoder(nn.Module):
    """Frozen HuBERT returning every hidden state: (L+1, B, T, D_a) and exact frame lengths.

    Decisions (reference §1.1 and §9):
    - pitfall 12: the backbone always stays in eval mode (dropout off) even when a parent calls ``.train()``;
      the original probably ran it in train mode by accident, and cached features need to be deterministic.
    - pitfall 9: ``feat_lens`` use the exact conv formula, not round(S / 320), so no mask covers a missing frame.
    - padding: the conv front-end runs per utterance on its unpadded waveform when it uses GroupNorm
      (hubert-base: GroupNorm statistics would otherwise include the zero padding), batched when it uses
      per-frame LayerNorm; the transformer gets a key-padding mask and padded frames are zeroed before the
      positional convolution, so an utterance's features do not depend on what it is batched with.
    - waveforms are layer-normalised per utterance (over its true length) when the feature-extractor config
      says ``do_normalize`` (HuBERT Large, the pocket model), as fairseq's task ``normalize`` did (§1.1).
    - hidden_states[0] is the transformer input after the positional conv (+ encoder LayerNorm for post-LN
      models); the other entries are raw layer outputs, so pre-LN models (Large) are un-normalised (pitfall 6).
    - the frozen part runs under ``frozen_autocast(precision)`` (bf16 on a CPU with native bf16 when "auto");
      its outputs are returned in fp32.
    """

    def __init__(self, model: HubertModel, do_normalize: bool = False, finetune_top_layers: int = 0,
                 frame_pool: int = 1, precision: str = "fp32"):
        super().__init__()
        self.model = model
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.do_normalize = do_normalize
        self.frame_pool = int(frame_pool)
        if self.frame_pool < 1:
            raise ValueError(f"frame_pool must be >= 1, got {frame_pool}")
        cfg = model.config
        self.hidden_size = cfg.hidden_size
        self.num_layers = cfg.num_hidden_layers
        self.num_hidden_states = cfg.num_hidden_layers + 1
        self.finetune_top_layers = int(finetune_top_layers)
        if not 0 <= self.finetune_top_layers <= self.num_layers:
            raise ValueError(f"finetune_top_layers must be in [0, {self.num_layers}], got {finetune_top_layers}")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in self.model.encoder.layers[self.num_layers - self.finetune_top_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.model.eval()

    def train(self, mode: bool = True):
        """Keep the backbone in eval mode whatever the parent asks (pitfall 12)."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def frame_rate(self) -> float:
        """Output frames per second: 16 kHz over the conv strides' product (HuBERT: 50), over frame_pool."""
        return 16000 / math.prod(self.model.config.conv_stride) / self.frame_pool

    def feature_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        """Frames per utterance from samples per utterance (exact conv arithmetic, then pooling)."""
        cfg = self.model.config
        lens = conv_output_lengths(wav_lens, cfg.conv_kernel, cfg.conv_stride)
        return torch.div(lens + self.frame_pool - 1, self.frame_pool, rounding_mode="floor")

    def _conv_features(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Conv front-end + projection -> (B, T, D_a), computed so padding cannot leak in."""
        wavs = wavs.float()
        if self.do_normalize or self.model.config.feat_extract_norm == "group":
            pieces = []
            for wav, n in zip(wavs, wav_lens.tolist()):
                w = wav[:n]
                if self.do_normalize:
                    w = F.layer_norm(w, w.shape)
                pieces.append(w)
            if self.model.config.feat_extract_norm == "group":
                feats = [self.model.feature_extractor(w[None]).transpose(1, 2)[0] for w in pieces]
                feats = nn.utils.rnn.pad_sequence(feats, batch_first=True)
                return self.model.feature_projection(feats)
            wavs = nn.utils.rnn.pad_sequence(pieces, batch_first=True)
        feats = self.model.feature_extractor(wavs).transpose(1, 2)
        return self.model.feature_projection(feats)

    def _run_layers(self, x: torch.Tensor, pad: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
        """Transformer layers [start, stop) with a key-padding mask; returns each layer's output."""
        additive = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
        additive = additive.masked_fill(pad, torch.finfo(x.dtype).min)[:, None, None, :]
        outs = []
        for layer in self.model.encoder.layers[start:stop]:
            x = layer(x, attention_mask=additive)
            x = x[0] if isinstance(x, tuple) else x
            outs.append(x.masked_fill(pad[..., None], 0.0))
        return outs

    def _input_state(self, wavs: torch.Tensor, wav_lens: torch.Tensor, feat_lens: torch.Tensor) -> tuple:
        x = self._conv_features(wavs, wav_lens)
        pad = torch.arange(x.shape[1], device=x.device)[None] >= feat_lens[:, None]  # (B, T) True = padding
        x = x.masked_fill(pad[..., None], 0.0)  # the positional conv must see zeros past the end, as unbatched
        enc = self.model.encoder
        x = x + enc.pos_conv_embed(x)
        if not self.model.config.do_stable_layer_norm:
            x = enc.layer_norm(x)
        return x.masked_fill(pad[..., None], 0.0), pad

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms -> hidden_states (L+1, B, T, D_a), feat_lens (B,)."""
        wav_lens = wav_lens.to(wavs.device)
        cfg = self.model.config
        feat_lens = conv_output_lengths(wav_lens, cfg.conv_kernel, cfg.conv_stride)
        split = self.num_layers - self.finetune_top_layers
        dtype = frozen_autocast(self.precision, wavs.device)
        with torch.no_grad(), torch.autocast(wavs.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            x, pad = self._input_state(wavs, wav_lens, feat_lens)
            states = [s.float() for s in [x] + self._run_layers(x, pad, 0, split)]
        if self.finetune_top_layers:
            states += self.forward_top(states[-1], feat_lens, start_layer=split)
        return pool_frames(torch.stack(states), feat_lens, self.frame_pool)

    def forward_top(self, hidden_state: torch.Tensor, feat_lens: torch.Tensor, start_layer: int) -> list:
        """Run layers start_layer..L-1 on hidden_states[start_layer] (B, T, D_a); returns the L - j later states.

        Lets a trainer cache the frozen lower layers once and run only the finetuned top ones each step.
        """
        pad = torch.arange(hidden_state.shape[1], device=hidden_state.device)[None] >= feat_lens[:, None].to(
            hidden_state.device)
        if start_layer < self.num_layers - self.finetune_top_layers:
            with torch.no_grad():
                return self._run_layers(hidden_state, pad, start_layer, self.num_layers)
        return self._run_layers(hidden_state, pad, start_layer, self.num_layers)


def pool_frames(hidden_states: torch.Tensor, feat_lens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average each run of k frames: (L+1, B, T, D) -> (L+1, B, ceil(T/k), D), lengths ceil(len/k).

    A window that runs past an utterance's end averages only its real frames, so padding never leaks in.
    Pooling is linear, so it commutes with the weighted layer sum: the cache may store pooled states.
    """
    if k == 1:
        return hidden_states, feat_lens
    L1, B, T, D = hidden_states.shape
    pad = (-T) % k
    valid = (torch.arange(T + pad, device=feat_lens.device)[None] < feat_lens[:, None]).to(hidden_states.dtype)
    x = F.pad(hidden_states, (0, 0, 0, pad)) * valid[None, :, :, None]  # (L+1, B, T+pad, D), zero past the end
    sums = x.reshape(L1, B, (T + pad) // k, k, D).sum(3)
    counts = valid.reshape(B, (T + pad) // k, k).sum(2).clamp(min=1)  # (B, T')
    return sums / counts[None, :, :, None], torch.div(feat_lens + k - 1, k, rounding_mode="floor")


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum of all hidden states, weights zero-initialised: sum_l softmax(w)_l * h_l (§1.1).

    With ``normalize=True`` each state first gets a parameter-free LayerNorm (HuBERT Large, pitfall 6).
    """

    def __init__(self, num_states: int, normalize: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))
        self.normalize = normalize

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            hidden_states = F.layer_norm(hidden_states, hidden_states.shape[-1:])
        w = torch.softmax(self.weights, dim=0).to(hidden_states.dtype)
        return torch.einsum("l,lbtd->btd", w, hidden_states)  # (B, T, D_a)


def _read_do_normalize(folder: Path | None, config: HubertConfig) -> bool:
    """The feature extractor's ``do_normalize`` when the folder has one, else the fairseq convention."""
    pre = folder / "preprocessor_config.json" if folder is not None else None
    if pre is not None and pre.is_file():
        try:
            return bool(json.loads(pre.read_text()).get("do_normalize", False))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise _broken_folder_error(folder, err) from err
    # hubert-base ships no preprocessor config and was trained without normalisation; Large (LayerNorm convs) with.
    return config.feat_extract_norm == "layer"


def _missing_weights_error(name: str, err: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"Could not load HuBERT '{name}': it is neither a local folder nor in the Hugging Face cache, and the hub "
        f"is unreachable from here ({type(err).__name__}). Fetch the weights on a machine with internet, e.g.\n"
        f"    huggingface-cli download {name} --local-dir checkpoints/{name.split('/')[-1]}\n"
        f"copy the folder here and set speech.name to that folder (a save_pretrained folder also works). "
        f"Offline, use speech.name='pocket' instead.")


def _broken_folder_error(folder: Path, err: Exception) -> WeightsError:
    why = " ".join(str(err).split())[:300]
    return WeightsError(
        f"{folder}: a HuBERT folder that does not load ({type(err).__name__}: {why}). It needs config.json and "
        "model.safetensors (or pytorch_model.bin) from one save_pretrained; a cut-short copy is the usual cause: "
        "copy the folder again (a pocket cache under artifacts/pocket: delete it to retrain).")


def _random_config(name: str) -> HubertConfig:
    return HubertConfig(**_LARGE) if "large" in name.lower() else HubertConfig()


def load_speech_encoder(cfg, random_init: bool = False, cache_dir=None, pocket_cfg=None, corpus_root=None,
                        artifacts_dir=None) -> SpeechEncoder:
    """Build the frozen SpeechEncoder from ``cfg.name``: hub name, save_pretrained folder, or "pocket".

    ``pocket_cfg``/``corpus_root``/``artifacts_dir`` are used only for "pocket" (trained and cached on first use,
    then loaded through the same folder path as a real checkpoint); ``cache_dir`` is the Hugging Face cache.
    ``random_init`` builds the architecture without weights (parameter counts offline).
    """
    name = str(cfg.name)
    finetune = getattr(cfg, "finetune_top_layers", 0)
    pool = getattr(cfg, "frame_pool", 1)
    precision = getattr(cfg, "precision", "fp32")
    if name == "pocket":
        from speechclip import pocket, pocket_hubert
        from speechclip.config import PocketHubertConfig
        pocket_cfg = pocket_cfg or PocketHubertConfig()
        if random_init:
            model = HubertModel(pocket_hubert.hubert_config(pocket_cfg))
            return SpeechEncoder(model, do_normalize=True, finetune_top_layers=finetune, frame_pool=pool,
                                 precision=precision)
        name = str(pocket.ensure_pocket_hubert(pocket_cfg, corpus_root, artifacts_dir=artifacts_dir))
    folder = Path(name) if Path(name).is_dir() else None
    try:
        if random_init:
            model = HubertModel(HubertConfig.from_pretrained(folder) if folder is not None else _random_config(name))
        else:
            model = HubertModel.from_pretrained(name, cache_dir=cache_dir)
    except Exception as err:  # safetensors, json and torch each raise their own type for a broken file
        if folder is not None:  # it exists: downloading is not the fix
            raise _broken_folder_error(folder, err) from err
        if isinstance(err, OSError):
            raise _missing_weights_error(name, err) from err
        raise
    return SpeechEncoder(model, _read_do_normalize(folder, model.config), finetune, pool, precision)

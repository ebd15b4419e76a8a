"""The checks `fit` runs so that no fault passes silently: too little data, non-finite values, mismatched resumes.

A run stops with a TrainingFault that names the step (as metrics.jsonl numbers it) and what to change, before a
checkpoint with non-finite weights can be written. With fp16 autocast the GradScaler skips steps whose scaled
gradients overflow and halves the scale; those are counted (amp_skipped), not errors, until the scale falls to 1,
where the gradients overflow without any scaling and are really non-finite. Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

# Settings a resume may change freely: they decide where things are logged and computed, not what is learned.
RESUME_FREE = frozenset({"train.device", "train.log_every", "train.eval_every", "train.checkpoint_every",
                         "data.num_workers", "data.eval_batch_size", "data.on_error"})


class TrainingFault(RuntimeError):
    """Training cannot go on; the message names the step or the file and the fix."""


def split_name(dataset) -> str:
    return getattr(dataset, "name", type(dataset).__name__)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype train.precision asks for on this device; None = plain fp32."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingFault(f"train.precision='bf16' but {torch.cuda.get_device_name(device)} has no bf16; "
                                "use 'fp16' or 'fp32'.")
        return torch.bfloat16
    return torch.float16  # "fp16", or "auto" on CUDA (§2.2)


def check_split_sizes(train_set, dev_set, batch_size: int, world: int) -> None:
    """A train split must fill one batch per process (else fit would loop forever); dev must not be empty."""
    per_process = batch_size // world
    if per_process == 0:
        raise TrainingFault(f"data.batch_size={batch_size} is smaller than the {world} processes; raise it.")
    n = len(train_set)
    if n < per_process:
        what = "is empty" if n == 0 else f"has {n} utterances, fewer than one batch of {per_process}"
        raise TrainingFault(f"{split_name(train_set)} {what} (data.batch_size={batch_size} over {world} "
                            "process(es)); lower data.batch_size or check the split file and the skip summary.")
    if len(dev_set) == 0:
        raise TrainingFault(f"{split_name(dev_set)} is empty: the best checkpoint is chosen on it; check its split.")


def check_finite_loss(losses: dict, state, train_cfg) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise TrainingFault(
            f"step {state.step + 1} (epoch {state.epoch}, batch {state.batch_in_epoch}): non-finite loss {bad}; "
            f"stopped before the update, so no checkpoint holds it. Look for NaN/inf in the inputs or cached "
            f"features, lower train.lr (now {train_cfg.lr}), or try train.precision='fp32' if it is "
            f"'{train_cfg.precision}'.")


def check_finite_grads(model, grad_norm: float, scaler, state) -> bool:
    """True when the GradScaler will skip this fp16 step; raises when the gradients are truly non-finite."""
    if math.isfinite(grad_norm):
        return False
    if scaler.is_enabled() and scaler.get_scale() > 1.0:
        state.amp_skipped += 1
        return True
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    why = (f"still overflowing at loss scale {scaler.get_scale()} after {state.amp_skipped} skipped fp16 steps"
           if scaler.is_enabled() else "with a finite loss")
    raise TrainingFault(f"step {state.step + 1}: non-finite gradient (norm {grad_norm}) in {bad[:5]}, {why}; "
                        "stopped before the update. Lower train.lr or train.grad_clip, or look for NaN/inf inputs.")


def check_finite_weights(weights: dict, step: int) -> None:
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingFault(f"step {step}: non-finite weights in {bad[:5]}; no checkpoint was written. "
                            "Resume from the last checkpoint with a lower train.lr.")


def save_atomically(obj, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash mid-save never leaves a truncated checkpoint."""
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def check_resume_config(path: Path, saved: dict, current: dict, allow: bool) -> None:
    """Refuse to resume a checkpoint written with other settings (family, lr, schedule, batch...) unless allowed."""
    old, new = _flat(saved), _flat(current)
    changes = [f"{k} {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys())
               if k not in RESUME_FREE and old[k] != new[k]]
    if not changes:
        return
    listed = "; ".join(changes)
    if allow:
        print(f"{path}: resuming with a changed config ({listed}); optimizer and schedule state come from the file")
        return
    raise TrainingFault(f"{path} was written with a different config: {listed}. Resume with the saved settings, "
                        "train into a new out_dir, or pass allow_config_change=True "
                        "(pipeline: --allow-config-change) to resume anyway.")


def cut_log(log: Path, state) -> None:
    """Drop the metrics rows written after the checkpoint being resumed, so no step is logged twice."""
    if not log.exists():
        return
    if state.log_bytes is not None:
        if log.stat().st_size > state.log_bytes:
            with open(log, "r+b") as fh:
                fh.truncate(state.log_bytes)
        return
    rows = [r for r in log.read_text().splitlines() if r.strip()]  # checkpoints older than log_bytes
    log.write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= state.step))

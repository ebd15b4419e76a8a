"""One `fit` for every model family: Adam, warmup + linear decay, clipping, AMP on GPU, validation, resume, DDP.

Recipe (§2.2): Adam lr 1e-4, weight decay 1e-6, factor (step+1)/warmup then linear decay to lr * 1e-4 at
max_steps, global-norm clipping at 4, fp16 autocast on GPU, best checkpoint by mean R@10 on the dev split.
Under torchrun each process sees its shard of the batch, and the contrastive loss gathers all shards so the
negatives are the full batch, as in the reference's `dp` training (BatchNorm statistics stay per process,
pitfall 11). Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from speechclip.evaluation import evaluate
from speechclip.model import TRAIN_DIAGNOSTICS
from speechclip.train_checks import (TrainingFault, autocast_dtype, check_finite_grads, check_finite_loss,  # noqa: F401
                                     check_finite_weights, check_resume_config, check_split_sizes, cut_log,
                                     save_atomically, split_name)


def lr_factor(step: int, warmup: int, max_steps: int, final_ratio: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then linear decay to `final_ratio` at `max_steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return 1.0 - (1.0 - final_ratio) * progress


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    if name != "auto":
        return torch.device(name)
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed, so a mid-epoch resume skips them
    best: float = -1.0
    best_metrics: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    amp_skipped: int = 0  # fp16 steps the GradScaler skipped (overflow at the current loss scale)
    log_bytes: int | None = None  # size of metrics.jsonl when this state was saved: a resume cuts it back


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


class Trainer:
    """Holds the optimisation state of one run directory; `fit` is the function most code calls."""

    def __init__(self, model, train_set, dev_set, cfg, out_dir, collate, sampler_cls=None, progress=True):
        self.model, self.train_set, self.dev_set, self.cfg = model, train_set, dev_set, cfg
        self.out_dir, self.collate, self.progress = Path(out_dir), collate, progress
        self.rank, self.world = dist_info()
        self.device = resolve_device(cfg.train.device)
        model.to(self.device)
        tc = cfg.train
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.max_steps, tc.final_lr_ratio))
        self.amp_dtype = autocast_dtype(self.device, tc.precision)
        self.amp = self.amp_dtype is not None
        # only fp16 needs loss scaling; bf16 has fp32's exponent range
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net = model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        from speechclip.data import LengthBucketSampler

        sampler_cls = sampler_cls or LengthBucketSampler
        check_split_sizes(train_set, dev_set, cfg.data.batch_size, self.world)
        self.sampler = sampler_cls(train_set.lengths(), cfg.data.batch_size // self.world, shuffle=True,
                                   drop_last=True, seed=tc.seed, num_replicas=self.world, rank=self.rank)
        if len(self.sampler) == 0:  # e.g. a custom sampler_cls, or batches lost to equal DDP shares
            raise TrainingFault(f"{split_name(train_set)}: its {len(train_set)} utterances give no full batch of "
                                f"{cfg.data.batch_size} over {self.world} process(es); lower data.batch_size.")
        self.state = TrainState()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    # ---- checkpoints ----
    def save_checkpoint(self, name: str = "last.pt") -> None:
        if self.rank != 0:
            return
        weights = self.model.trainable_state_dict()
        check_finite_weights(weights, self.state.step)
        log = self.out_dir / "metrics.jsonl"
        self.state.log_bytes = log.stat().st_size if log.exists() else 0
        save_atomically({"model": weights, "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                         "state": self.state.__dict__, "rng": _rng_state(), "config": self.cfg.to_dict()},
                        self.out_dir / name)

    def load_checkpoint(self, path: Path, allow_config_change: bool = False) -> None:
        from speechclip.model import read_checkpoint

        ckpt = read_checkpoint(path, self.device, keys=("model", "optimizer", "scheduler", "state", "config"))
        check_resume_config(path, ckpt["config"], self.cfg.to_dict(), allow_config_change)
        self.model.load_state_dict(ckpt["model"], strict=False)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        _set_rng_state(ckpt["rng"])
        if self.rank == 0:
            cut_log(self.out_dir / "metrics.jsonl", self.state)

    # ---- steps ----
    def train_step(self, batch: dict) -> dict:
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp):
            out = self.net(batch, step=self.state.step)  # the step decides CIF's early rescaling (§5.1)
        logged = {k: v.item() for k, v in out.items() if k.endswith("loss") or k in TRAIN_DIAGNOSTICS}
        check_finite_loss(logged, self.state, self.cfg.train)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        skipped = check_finite_grads(self.model, float(grad_norm), self.scaler, self.state)
        self.scaler.step(self.optimizer)  # skips the update itself when fp16 gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        return {**logged, "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0],
                "logit_scale": float(self.model.logit_scale.detach()), **({"amp_skipped": True} if skipped else {})}

    def validate(self) -> dict:
        if self.rank == 0:
            metrics = evaluate(self.model, self.dev_set, self.collate, self.cfg.data.eval_batch_size,
                               text_retrieval=False)
            self.log({"split": "dev", **metrics})
            score = metrics["mean_R@10"]
            if score > self.state.best:
                self.state.best, self.state.best_metrics = score, metrics
                check_finite_weights(self.model.trainable_state_dict(), self.state.step)
                self.model.save(self.out_dir / "best.pt", step=self.state.step, metrics=metrics)
        else:
            metrics = {}
        self.model.train()
        if self.world > 1:
            dist.barrier()
        return metrics

    def log(self, row: dict) -> None:
        if self.rank == 0:
            row = {"step": self.state.step, "epoch": self.state.epoch, **row}
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    # ---- loop ----
    def run_epoch(self, bar) -> None:
        tc, st = self.cfg.train, self.state
        self.sampler.set_epoch(st.epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(st.epoch)
        batches = list(self.sampler)[st.batch_in_epoch:]
        # Its own generator: creating a loader must not draw from the global RNG, or a resumed run's dropout
        # masks would differ from an uninterrupted run's.
        loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=batches, collate_fn=self.collate,
                                             num_workers=self.cfg.data.num_workers,
                                             generator=torch.Generator().manual_seed(self.cfg.train.seed))
        self.model.train()
        for batch in loader:
            t0 = time.perf_counter()
            logged = self.train_step(batch)
            st.step, st.batch_in_epoch = st.step + 1, st.batch_in_epoch + 1
            st.wall_seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}")
            if st.step % tc.log_every == 0:
                self.log({"split": "train", **logged})
            if tc.eval_every and st.step % tc.eval_every == 0:
                self.validate()
            if tc.checkpoint_every and st.step % tc.checkpoint_every == 0:
                self.save_checkpoint()
            if st.step >= min(tc.max_steps, self.stop_at):
                return
        st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        if not tc.eval_every:
            self.validate()
        self.save_checkpoint()

    def fit(self, resume: bool = True, stop_after_steps: int | None = None,
            allow_config_change: bool = False) -> TrainState:
        """Train to cfg.train.max_steps; stop_after_steps ends early (an interruption) without touching the schedule.

        A resume refuses a config that differs from the checkpoint's in what changes the result, unless
        allow_config_change=True.
        """
        last = self.out_dir / "last.pt"
        if resume and last.exists():
            self.load_checkpoint(last, allow_config_change)
        else:
            seed_everything(self.cfg.train.seed + self.rank)
            if self.rank == 0:  # a fresh start: rows of an earlier run here would interleave with this one's
                (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
        tc = self.cfg.train
        self.stop_at = stop_after_steps or tc.max_steps
        with tqdm(total=tc.max_steps, initial=self.state.step, desc="train",
                  disable=not self.progress or self.rank != 0) as bar:
            while self.state.step < self.stop_at:
                self.run_epoch(bar)
        if self.state.step >= tc.max_steps and self.state.batch_in_epoch:  # ended mid-epoch: validate the end
            self.validate()
        self.save_checkpoint()
        return self.state


def fit(model, train_set, dev_set, cfg, out_dir, collate, resume: bool = True, progress: bool = True,
        sampler_cls=None, stop_after_steps: int | None = None, allow_config_change: bool = False) -> TrainState:
    """Train `model` on `train_set` by cfg.train, validating on `dev_set`; resumes from out_dir/last.pt."""
    trainer = Trainer(model, train_set, dev_set, cfg, out_dir, collate, sampler_cls, progress)
    return trainer.fit(resume, stop_after_steps, allow_config_change)

"""Time one optimizer step of the paper-size (Base) branches on random frozen features: CPU or GPU, fp32 or AMP.

    python benchmarks/train_step.py --family parallel --device cuda --batch 256 --frames 250

Backbones are built with random weights (no download); only the trainable part runs, as with cached features.
Prints a JSON line per setting: milliseconds per step (median of --repeat after --warmup) and peak GPU memory.
"""
import argparse
import json
import statistics
import time

import torch

from speechclip.config import load_config
from speechclip.model import build_model

CAPTIONS = ["a dog runs on the grass", "two people ride bikes down a street", "a red boat on a lake"]


def batch_for(model, batch: int, frames: int, device) -> dict:
    states, dim = model.speech_encoder.num_hidden_states, model.speech_encoder.hidden_size
    return {"hidden_states": torch.randn(states, batch, frames, dim, device=device),
            "feat_lens": torch.full((batch,), frames, device=device),
            "image_embeds": torch.nn.functional.normalize(torch.randn(batch, model.clip.embed_dim, device=device), dim=-1),
            "image_ids": torch.arange(batch, device=device)}


def time_steps(model, batch, amp: bool, warmup: int, repeat: int) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    device_type = batch["image_ids"].device.type
    times = []
    for i in range(warmup + repeat):
        if device_type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type, dtype=torch.float16, enabled=amp):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device_type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="parallel")
    p.add_argument("--preset", default="base")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    model = build_model(load_config(args.preset, args.family), vocab_captions=CAPTIONS, random_init=True)
    model = model.to(args.device).train()
    batch = batch_for(model, args.batch, args.frames, args.device)
    for amp in ([False, True] if args.device == "cuda" else [False]):
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ms = time_steps(model, batch, amp, args.warmup, args.repeat)
        row = {"family": args.family, "preset": args.preset, "device": args.device, "amp": amp,
               "batch": args.batch, "frames": args.frames, "ms_per_step": round(statistics.median(ms), 2)}
        if args.device == "cuda":
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            row["gpu"] = torch.cuda.get_device_name()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

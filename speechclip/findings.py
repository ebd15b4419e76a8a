"""The two SpeechCLIP+ claims over several seeds: every family trained N times, means, spreads and verdicts.

docs/paper_numbers.md ("What SpeechCLIP+ claims") lists them: (1) CIF keywords (Cascaded+) are better than the
fixed-K cascaded model's, (2) in a hybrid, the cascaded objective improves the parallel branch's retrieval. One
run per model (notebooks 10, 11, 20, 21) cannot tell a small difference from seed noise; this module trains
parallel, cascaded, cascaded_plus, hybrid and hybrid_plus for seeds 7122, 7123, ... and compares:

    (a) cascaded_plus against cascaded: keyword top-1 and top-5 hit rates, speech->image R@1 (higher is the claim)
    (b) hybrid's parallel branch against parallel only: speech->image R@1 and R@10
    (c) hybrid_plus's parallel branch against parallel only: the same
    (d) CIF firing positions against evenly spaced ones: word-boundary F1 at 20 and 50 ms (cascaded_plus runs)

Retrieval of a hybrid is read from its parallel branch: `evaluation.evaluate` reports each branch of a hybrid as
`parallel_*` and `cascaded_*` beside the unprefixed keys, and the unprefixed keys follow `model.retrieval_branch`,
which is the cascaded embedding for Base Hybrid (§5.4). `key_metrics` picks the parallel ones.

Verdict rule, per compared metric: d = mean(claimed better) - mean(other), with the standard error of d from the
seed spread, se = sqrt(s1^2 / n1 + s2^2 / n2) (sample standard deviations; for (d), where CIF and its evenly
spaced baseline come from the same runs, se = s(paired differences) / sqrt(n)). "reproduced" when d > 2 se,
"not reproduced" when d < -2 se, "within noise" otherwise; with one seed on either side, "one seed: no spread".

    python -m speechclip.findings --preset pocket --seeds 3 --out artifacts/findings

A run whose result.json holds the same config is skipped; an interrupted one resumes from its checkpoint; one
finished with other settings (the preset changed) is moved to `<seed folder>-previous-settings` and trained again.
Introduced in notebooks/21_hybrid.ipynb.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from speechclip import boundaries
from speechclip.config import FAMILIES, config_from_dict, load_config
from speechclip.features import collate_features
from speechclip.model import load_model
from speechclip.pipeline import parse_overrides, prepare, train_and_evaluate
from speechclip.train import resolve_device

FIRST_SEED = 7122  # the notebooks' SEED
TOLERANCES = {"20ms": 0.02, "50ms": 0.05}
RETRIEVAL = ("speech2image_R@1", "speech2image_R@5", "speech2image_R@10", "image2speech_R@1")
KEYWORDS = ("kw_top1_avg", "kw_top1_chance", "kw_avg", "kw_chance")
# claim -> (label, better family, other family, metrics); "cif_f1_*" against "even_f1_*" is paired within runs
CLAIMS = {
    "a": ("CIF keywords (cascaded_plus) against fixed-K cascaded", "cascaded_plus", "cascaded",
          ("kw_top1_avg", "kw_avg", "speech2image_R@1")),
    "b": ("hybrid's parallel branch against parallel only", "hybrid", "parallel",
          ("speech2image_R@1", "speech2image_R@10")),
    "c": ("hybrid_plus's parallel branch against parallel only", "hybrid_plus", "parallel",
          ("speech2image_R@1", "speech2image_R@10")),
    "d": ("CIF firing positions against evenly spaced ones (word ends)", "cascaded_plus", "cascaded_plus",
          ("f1_20ms", "f1_50ms")),
}


def seed_list(n: int, first: int = FIRST_SEED) -> list[int]:
    return [first + k for k in range(n)]


def key_metrics(family: str, test: dict, bounds: dict | None = None) -> dict:
    """The compared numbers of one run; a hybrid's retrieval keys are its parallel branch's."""
    prefix = "parallel_" if family in ("hybrid", "hybrid_plus") else ""
    out = {k: test[prefix + k] for k in RETRIEVAL}
    if prefix:
        out["cascaded_speech2image_R@1"] = test["cascaded_speech2image_R@1"]
    out.update({k: test[k] for k in KEYWORDS if k in test})
    for tol, per in (bounds or {}).items():
        out[f"cif_f1_{tol}"], out[f"even_f1_{tol}"] = per["CIF"]["f1"], per["evenly_spaced"]["f1"]
    return out


@torch.no_grad()
def cif_boundaries(exp, model, device) -> dict:
    """CIF firing frames and evenly spaced ones against the test split's word ends, per tolerance (notebook 20)."""
    model = model.to(device).eval()
    test, frame_rate = exp.features["test"], exp.speech_encoder.frame_rate
    alignments = exp.datasets["test"].alignments
    loader = torch.utils.data.DataLoader(test, batch_size=exp.cfg.data.eval_batch_size, collate_fn=collate_features)
    cif, even, reference = [], [], []
    for b in loader:
        o = model.encode_features(b["hidden_states"].to(device), b["feat_lens"].to(device))
        for i, (n, t) in enumerate(zip(o["keyword_lens"].tolist(), b["feat_lens"].tolist())):
            cif.append(boundaries.frames_to_times(o["fire_frames"][i, :n].tolist(), frame_rate))
            even.append(boundaries.frames_to_times(boundaries.even_fire_frames(n, t), frame_rate))
            reference.append(boundaries.word_boundaries(alignments[b["uids"][i]], "ends"))
    return {tol: {"CIF": boundaries.boundary_scores(cif, reference, s),
                  "evenly_spaced": boundaries.boundary_scores(even, reference, s)} for tol, s in TOLERANCES.items()}


def finished(run_dir: Path, cfg) -> dict | None:
    """The result of a run completed with this config, or None (not run, interrupted, or other settings)."""
    path = Path(run_dir) / "result.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    if "config" not in done:
        return None
    try:  # a setting added since, stored nowhere, takes its default: the run is what the code does with it
        stored = plain_config(config_from_dict(done["config"]))
    except (KeyError, TypeError, ValueError):  # a setting since removed or renamed: other settings
        return None
    return done if stored == plain_config(cfg) else None


def set_aside(run_dir: Path) -> Path | None:
    """A run finished with other settings (a changed preset) would refuse to resume: move it to
    `<run>-previous-settings` (replacing an older one there) and say so, so that nothing is silently lost."""
    run_dir = Path(run_dir)
    if not (run_dir / "result.json").exists():
        return None  # not run, or interrupted with these settings: train_and_evaluate resumes or refuses
    old = run_dir.with_name(run_dir.name + "-previous-settings")
    if old.exists():
        import shutil
        shutil.rmtree(old)
    run_dir.rename(old)
    print(f"{run_dir} was finished with other settings: moved to {old}", flush=True)
    return old


def plain_config(cfg) -> dict:
    """The config as result.json stores it (JSON: tuples become lists), for comparing with a stored one."""
    return json.loads(json.dumps(cfg.to_dict()))


def run_one(exp, cfg, run_dir: Path) -> dict:
    """Train and evaluate one (family, seed) into run_dir (resuming its checkpoint); CIF runs add boundaries."""
    t0 = time.perf_counter()
    exp.cfg = cfg
    for fs in exp.features.values():
        fs.seed = cfg.train.seed  # training crops follow the run's seed
    torch.manual_seed(cfg.train.seed)  # the branch's initial weights, as the notebooks seed them
    result = train_and_evaluate(exp, run_dir, resume=True, progress=False)
    result["config"] = plain_config(cfg)
    if cfg.model.family == "cascaded_plus" and exp.datasets["test"].alignments is not None:
        best = load_model(run_dir / "best.pt", exp.speech_encoder, exp.clip)
        result["boundaries"] = cif_boundaries(exp, best, resolve_device(cfg.train.device))
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))  # with its config: the run is complete
    return {**result, "seconds": time.perf_counter() - t0}


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def aggregate(runs: dict) -> dict:
    """{family: {seed: key metrics}} -> {family: {metric: {mean, std, n}}} over the seeds."""
    out = {}
    for family, per_seed in runs.items():
        names = sorted({k for m in per_seed.values() for k in m})
        out[family] = {k: mean_std([m[k] for m in per_seed.values() if k in m]) for k in names}
    return out


def verdict(better: list[float], other: list[float], paired: bool = False) -> dict:
    """The module docstring's rule on two lists of per-seed values (paired: the same runs, seed by seed)."""
    diff = statistics.fmean(better) - statistics.fmean(other)
    if min(len(better), len(other)) < 2:
        return {"difference": diff, "se": None, "verdict": "one seed: no spread"}
    if paired:
        se = statistics.stdev([b - o for b, o in zip(better, other)]) / math.sqrt(len(better))
    else:
        se = math.sqrt(statistics.variance(better) / len(better) + statistics.variance(other) / len(other))
    word = "reproduced" if diff > 2 * se else "not reproduced" if diff < -2 * se else "within noise"
    return {"difference": diff, "se": se, "verdict": word}


def verdicts(runs: dict) -> dict:
    """Each claim of CLAIMS whose families were trained: per metric, the difference, its se and the verdict."""
    out = {}
    for claim, (label, better, other, metrics) in CLAIMS.items():
        if better not in runs or other not in runs:
            continue
        per_metric = {}
        for name in metrics:
            if claim == "d":
                pairs = [(m[f"cif_{name}"], m[f"even_{name}"]) for m in runs[better].values() if f"cif_{name}" in m]
                if pairs:
                    per_metric[name] = verdict([p[0] for p in pairs], [p[1] for p in pairs], paired=True)
                continue
            a = [m[name] for m in runs[better].values() if name in m]
            b = [m[name] for m in runs[other].values() if name in m]
            if a and b:
                per_metric[name] = {"better": better, "other": other, **verdict(a, b)}
        out[claim] = {"claim": label, "metrics": per_metric}
    return out


def claims_table(findings: dict):
    """findings.json -> one row per (claim, metric): both means with their std, difference, 2 se, verdict."""
    import pandas as pd

    rows = []
    for claim, v in findings["verdicts"].items():
        better, other = CLAIMS[claim][1], CLAIMS[claim][2]
        for name, r in v["metrics"].items():
            pair = (f"cif_{name}", f"even_{name}") if claim == "d" else (name, name)
            a, b = findings["summary"][better][pair[0]], findings["summary"][other][pair[1]]
            rows.append({"claim": claim, "metric": name, "claimed better": better if claim != "d" else "CIF",
                         "mean ± std": _pm(a), "other": other if claim != "d" else "evenly spaced",
                         "other mean ± std": _pm(b), "difference": round(r["difference"], 2),
                         "2 se": None if r["se"] is None else round(2 * r["se"], 2), "verdict": r["verdict"]})
    return pd.DataFrame(rows)


def _pm(s: dict) -> str:
    return f"{s['mean']:.2f}" + ("" if s["std"] is None else f" ± {s['std']:.2f}")


def run_findings(preset: str, seeds: int, out: str | Path, artifacts: str | Path = "artifacts",
                 families=FAMILIES, overrides: dict | None = None) -> dict:
    """Train every family for every seed (skipping finished runs) and write <out>/findings.json."""
    out, seed_values = Path(out), seed_list(seeds)
    print(f"findings: preset {preset}, families {', '.join(families)}, seeds {seed_values} -> {out}")
    runs, raw, t0 = {}, {}, time.perf_counter()
    for family in families:
        cfgs = {s: load_config(preset, family, {**(overrides or {}), "train.seed": s}) for s in seed_values}
        exp = None
        for k, seed in enumerate(seed_values):
            run_dir = out / family / f"seed{seed}"
            result = finished(run_dir, cfgs[seed])
            if result is None:
                set_aside(run_dir)
                print(f"[{family} seed {seed} ({k + 1}/{len(seed_values)})] training in {run_dir}", flush=True)
                exp = exp or prepare(cfgs[seed], artifacts)  # once per family: each seed reuses its features
                result = run_one(exp, cfgs[seed], run_dir)
            state = "done earlier, skipped" if "seconds" not in result else f"{result.pop('seconds'):.0f} s"
            raw.setdefault(family, {})[str(seed)] = {k2: result[k2] for k2 in ("steps", "test", "boundaries")
                                                     if k2 in result}
            runs.setdefault(family, {})[str(seed)] = key_metrics(family, result["test"], result.get("boundaries"))
            print(f"[{family} seed {seed} ({k + 1}/{len(seed_values)})] {state}: speech2image_R@1 "
                  f"{runs[family][str(seed)]['speech2image_R@1']:.1f}", flush=True)
    findings = {"preset": preset, "seeds": seed_values, "families": list(families), "overrides": overrides or {},
                "runs": runs, "summary": aggregate(runs), "verdicts": verdicts(runs), "raw": raw,
                "rule": "reproduced: difference of means in the paper's direction and > 2 standard errors; "
                        "not reproduced: < -2 standard errors; within noise otherwise",
                "wall_seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(json.dumps(findings, indent=1))
    return findings


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="pocket")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="artifacts/findings")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--data-dir", help="the corpus (data.root); default: the preset's")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. train.max_steps=200")
    args = p.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.data_dir:
        overrides["data.root"] = args.data_dir
    findings = run_findings(args.preset, args.seeds, args.out, args.artifacts, tuple(args.families), overrides)
    print(claims_table(findings).to_string(index=False))


if __name__ == "__main__":
    main()

"""The README's results table, written from recorded metrics, never by hand.

Reads the notebooks' metrics (a run folder's `artifacts/metrics/*.json`, or a stored regression baseline such as
`tests/baselines/cpu.json`) and writes the block between the results markers of README.md. `tests/test_readme.py`
renders the block again from `tests/baselines/cpu.json` and checks that the README says exactly that.

    python benchmarks/results_table.py --metrics artifacts/metrics      # after `make tutorial`
    python benchmarks/results_table.py --baseline tests/baselines/cpu.json
    python benchmarks/results_table.py --findings benchmarks/findings_pocket.json   # the SpeechCLIP+ claims block
    python benchmarks/results_table.py --findings-runs benchmarks/findings_runs.json   # the same, from tutorial runs
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
FINDINGS_START, FINDINGS_END = "<!-- findings:start -->", "<!-- findings:end -->"
# the same claims from whole tutorial runs at three seeds (benchmarks/findings_from_runs.py)
RUNS_START, RUNS_END = "<!-- findings-runs:start -->", "<!-- findings-runs:end -->"
CLAIM_NAMES = {"a": "CIF keywords ≥ fixed K", "b": "Hybrid's parallel branch ≥ parallel only",
               "c": "Hybrid+'s parallel branch ≥ parallel only", "d": "CIF fires nearer word ends than evenly spaced"}


def _flatten(record, prefix: str = "") -> dict:
    if isinstance(record, (bool, int, float)):
        return {prefix: record}
    items = record.items() if isinstance(record, dict) else enumerate(record) if isinstance(record, list) else ()
    out = {}
    for key, value in items:
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def from_metrics_dir(folder: Path) -> dict:
    return {f"{p.stem}/{k}": v for p in sorted(Path(folder).glob("*.json"))
            for k, v in _flatten(json.loads(p.read_text())).items()}


def from_baseline(path: Path) -> dict:
    return {k: e["value"] for k, e in json.loads(Path(path).read_text())["metrics"].items()}


def render(m: dict) -> str:
    """Markdown of the results and of the floors the offline preset is held to (issue 'offline learning')."""
    def r(key: str, ks=(1, 5, 10), sep: str = "_R@", digits: int = 1) -> str:
        return " / ".join(f"{m[f'{key}{sep}{k}']:.{digits}f}" for k in ks)

    def get(key: str, default=None):
        return m.get(key, default)

    rows = ["| model (test split: 500 images, 2,500 utterances) | speech→image R@1 / 5 / 10 | "
            "image→speech R@1 / 5 / 10 | other |", "|---|---|---|---|"]
    rows.append(f"| chance | {r('10_parallel/chance.speech2image', sep='.R@')} | "
                f"{r('10_parallel/chance.image2speech', sep='.R@')} | speech↔text "
                f"{r('10_parallel/chance.speech2text', sep='.R@', digits=2)} |")
    rows.append(f"| pocket CLIP topline: full captions (text→image, image→text) | "
                f"{r('01_backbones/clip_topline.text2image')} | {r('01_backbones/clip_topline.image2text')} | |")
    rows.append(f"| cascaded topline: each caption's content words only, through the same CLIP | "
                f"{r('11_cascaded/cascaded_topline.text2image')} | {r('11_cascaded/cascaded_topline.image2text')} | |")
    rows.append(f"| Parallel SpeechCLIP (`10`), held-out voices | {r('10_parallel/test.speech2image')} | "
                f"{r('10_parallel/test.image2speech')} | zero-shot speech→text "
                f"{r('10_parallel/zero_shot_text.speech2text')} |")
    rows.append(f"| Parallel SpeechCLIP (`10`), the same captions in training voices | "
                f"{r('10_parallel/test_seen_voices.speech2image')} | {r('10_parallel/test_seen_voices.image2speech')} | |")
    rows.append(f"| Cascaded SpeechCLIP (`11`), K = 8, held-out voices | {r('11_cascaded/test.speech2image')} | "
                f"{r('11_cascaded/test.image2speech')} | keyword top-1 is a caption content word "
                f"{m['11_cascaded/test.kw_top1_avg']:.1f}% (chance {m['11_cascaded/test.kw_top1_chance']:.1f}%"
                + (f", always the most frequent word {m['11_cascaded/test.kw_top1_prior']:.1f}%"
                   if get("11_cascaded/test.kw_top1_prior") is not None else "") + "); "
                f"reference top-5 hit rate {m['11_cascaded/test.kw_avg']:.1f}% "
                f"(chance {m['11_cascaded/test.kw_chance']:.1f}%"
                + (f", always the five most frequent words {m['11_cascaded/test.kw_prior']:.1f}%"
                   if get("11_cascaded/test.kw_prior") is not None else "") + ") |")
    if get("20_cif/test.speech2image_R@1") is not None:
        rows.append(f"| Cascaded+ SpeechCLIP (`20`), CIF keywords, held-out voices | {r('20_cif/test.speech2image')} | "
                    f"{r('20_cif/test.image2speech')} | keyword top-1 {m['20_cif/test.kw_top1_avg']:.1f}% "
                    f"(chance {m['20_cif/test.kw_top1_chance']:.1f}%); {m['20_cif/test.cif_tokens']:.1f} keywords "
                    f"fired per utterance (target {m['20_cif/test.cif_target']:.1f}); word-end F1 at 50 ms "
                    f"{m['20_cif/boundaries.CIF.50ms.f1']:.1f} (evenly spaced "
                    f"{m['20_cif/boundaries.evenly_spaced.50ms.f1']:.1f}) |")
    if get("21_hybrid/test.parallel_speech2image_R@1") is not None:
        rows.append(f"| Hybrid SpeechCLIP+ (`21`), parallel branch, held-out voices | "
                    f"{r('21_hybrid/test.parallel_speech2image')} | {r('21_hybrid/test.parallel_image2speech')} | "
                    f"keyword branch speech→image R@1 {m['21_hybrid/test.cascaded_speech2image_R@1']:.1f}, keyword "
                    f"top-1 {m['21_hybrid/test.kw_top1_avg']:.1f}% (same preset, seed and steps as `10`) |")
    probe = "01_backbones/word_probe.mean"
    best = max(range(5), key=lambda i: m.get(f"{probe}.layer_accuracy.{i}", -1))
    rows += ["", f"Word probe (`01`, a linear classifier trained on training voices, scored on the held-out voices, "
             f"{m['01_backbones/word_probe.num_words']} words): pocket HuBERT "
             f"{100 * m[f'{probe}.layer_accuracy.{best}']:.1f}% (hidden state {best}), untrained "
             f"{100 * max(m[f'01_backbones/word_probe_random_init.mean.layer_accuracy.{i}'] for i in range(5)):.1f}%, "
             f"MFCC {100 * m[f'{probe}.mfcc_accuracy']:.1f}%, majority word "
             f"{100 * m['01_backbones/word_probe.majority_accuracy']:.1f}%."]
    topline = m["01_backbones/clip_topline.text2image_R@1"]
    par, seen = m["10_parallel/test.speech2image_R@1"], m["10_parallel/test_seen_voices.speech2image_R@1"]
    cas, chance = m["11_cascaded/test.speech2image_R@1"], m["10_parallel/chance.speech2image.R@1"]
    kw, kw_chance = m["11_cascaded/test.kw_top1_avg"], m["11_cascaded/test.kw_top1_chance"]
    rows += ["", "| floor of the offline preset | measured | floor (goal) | met |", "|---|---|---|---|",
             f"| parallel speech→image R@1 / pocket CLIP text→image R@1 | {100 * par / topline:.0f}% | 50% (80%) | "
             f"{'yes' if par / topline >= 0.5 else 'no'} |",
             f"| cascaded speech→image R@1 / chance | {cas / chance:.1f}× | 10× | {'yes' if cas / chance >= 10 else 'no'} |",
             f"| cascaded keyword top-1 / its chance | {kw / kw_chance:.1f}× | 3× | {'yes' if kw / kw_chance >= 3 else 'no'} |",
             f"| parallel R@1, new voices / training voices | {100 * par / seen:.0f}% | 50% (90%) | "
             f"{'yes' if par / seen >= 0.5 else 'no'} |"]
    return "\n".join(rows)


def render_findings(findings: dict) -> str:
    """The claims table of `python -m speechclip.findings` (its findings.json) as README markdown."""
    sys.path.insert(0, str(ROOT))
    from speechclip.findings import claims_table

    rows = ["| claim | metric | claimed better: mean ± std | other: mean ± std | difference | 2 se | verdict |",
            "|---|---|---|---|---|---|---|"]
    for _, r in claims_table(findings).iterrows():
        rows.append(f"| {CLAIM_NAMES[r['claim']]} | {r['metric']} | {r['claimed better']}: {r['mean ± std']} | "
                    f"{r['other']}: {r['other mean ± std']} | {r['difference']} | {r['2 se']} | {r['verdict']} |")
    return "\n".join(rows)


def write(block: str, readme: Path = README, start: str = START, end: str = END) -> None:
    text = readme.read_text(encoding="utf-8")
    if start not in text:
        sys.exit(f"{readme} has no {start} ... {end} block")
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{block}\n{end}", text, flags=re.S)
    readme.write_text(text, encoding="utf-8")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics", type=Path, help="a folder of <notebook>.json metrics")
    src.add_argument("--findings-runs", type=Path,
                     help="a findings JSON of benchmarks/findings_from_runs.py (the claims block from tutorial runs)")
    src.add_argument("--baseline", type=Path, help="a regression baseline JSON")
    src.add_argument("--findings", type=Path, help="a findings.json of speechclip.findings (the claims block)")
    args = p.parse_args(argv)
    if args.findings or args.findings_runs:
        block = render_findings(json.loads((args.findings or args.findings_runs).read_text()))
        write(block, start=FINDINGS_START if args.findings else RUNS_START, end=FINDINGS_END if args.findings else RUNS_END)
        print(block)
        return
    metrics = from_metrics_dir(args.metrics) if args.metrics else from_baseline(args.baseline)
    block = render(metrics)
    write(block)
    print(block)


if __name__ == "__main__":
    main()

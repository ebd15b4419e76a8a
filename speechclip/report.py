"""Every model's recorded metrics set out as the papers' tables, and each paper finding judged on ours (notebook 30).

A finding is a direction ("parallel beats cascaded", "keywords hit above chance"), never an absolute value: our
corpus is synthetic and our backbones pocket-size, so only directions and ratios to chance or to the topline carry
over from the papers (`docs/paper_numbers.md`). A verdict is "yes", "no", "not run" (a record is missing) or
"within noise" (the difference is no larger than the spread over seeds, where `findings.json` gives one).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import paper_numbers as paper

# The notebook that records each model family, in the order the tables list them.
MODEL_NOTEBOOKS = {"parallel": "10_parallel", "cascaded": "11_cascaded", "cascaded_plus": "20_cif",
                   "hybrid": "21_hybrid"}
MODEL_LABELS = {"parallel": "Parallel", "cascaded": "Cascaded (K = 8)", "cascaded_plus": "Cascaded+ (CIF)",
                "hybrid": "Hybrid (parallel branch)"}
FINDINGS_FILE = Path("findings") / "findings.json"  # under ARTIFACTS_DIR, written by speechclip.findings
RETRIEVAL_KEYS = tuple(f"{d}_R@{k}" for d in ("speech2image", "image2speech") for k in (1, 5, 10))
ZERO_SHOT_KEYS = tuple(f"{d}_R@{k}" for d in ("speech2text", "text2speech") for k in (1, 5, 10))
TIE = 1e-4  # recall points: float32 recalls of one ranking differ from the exact chance level by about 1e-6
VERDICT_CODES = {"yes": 1, "no": 0, "within noise": 0.5}  # "not run" is recorded as nothing


def load_records(artifacts_dir, notebooks=tuple(MODEL_NOTEBOOKS.values())) -> dict:
    """{notebook: its metrics JSON, or None where ARTIFACTS_DIR/metrics/<notebook>.json does not exist}."""
    folder = Path(artifacts_dir) / "metrics"
    return {nb: json.loads((folder / f"{nb}.json").read_text()) if (folder / f"{nb}.json").exists() else None
            for nb in notebooks}


def load_findings(artifacts_dir) -> dict | None:
    """The multi-seed summary ARTIFACTS_DIR/findings/findings.json, or None before it has been written."""
    path = Path(artifacts_dir) / FINDINGS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def lookup(record: dict | None, path: str):
    """A value by dotted path ("test.speech2image_R@1"), or None where the record or any step is missing."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def seed_spread(findings: dict | None, family: str, key: str) -> float | None:
    """The standard deviation over seeds of one family's metric in findings.json (`speechclip.findings`), or None
    where it has none.

    findings.json keeps {"summary": {family: {metric: {"mean", "std", "n"}}}}, with a hybrid's parallel-branch
    numbers under the plain names ("speech2image_R@1"). A notebook key is mapped onto that: "test." is dropped, a
    hybrid's "parallel_" prefix too, and "parallel_only_test.<metric>" (notebook 21's copy of notebook 10's
    numbers) is the parallel family's metric.
    """
    findings = findings or {}
    families = findings.get("summary", findings.get("families", findings))
    if key.startswith("parallel_only_test."):
        family, key = "parallel", key.split(".", 1)[1]
    entry = families.get(family) if isinstance(families, dict) else None
    if not isinstance(entry, dict):
        return None
    plain = key.split(".", 1)[-1] if key.startswith("test.") else key
    candidates = [key, plain] + ([plain[len("parallel_"):]] if plain.startswith("parallel_") else [])
    for candidate in candidates:
        value = entry.get(candidate, lookup(entry, candidate))
        if isinstance(value, dict) and isinstance(value.get("std"), (int, float)):
            return float(value["std"])
    return None


def judge(ours: float | None, against: float | None, noise: float | None = None, at_least: bool = False) -> str:
    """Verdict on "ours beats against" ("≥" when at_least): yes / no / not run / within noise."""
    if ours is None or against is None:
        return "not run"
    if noise is not None and abs(ours - against) <= noise:
        return "within noise"
    if abs(ours - against) <= TIE:
        return "yes" if at_least else "no"
    return "yes" if ours > against else "no"


@dataclass(frozen=True)
class Finding:
    """One qualitative finding of a paper, as a comparison of two of our recorded numbers: a (model, key) beats b."""
    key: str
    table: str
    claim: str
    paper_shows: str
    a: tuple[str, str]  # (family, dotted key in its notebook's record)
    b: tuple[str, str]  # the same, or ("chance" | "record", ...) read from a's record
    at_least: bool = False


FINDINGS = (
    Finding("parallel_over_cascaded", "retrieval", "parallel beats cascaded on speech→image retrieval",
            "R@1 26.7 vs 8.2 (Base), 39.1 vs 14.7 (Large), Flickr8k (R)",
            ("parallel", "test.speech2image_R@1"), ("cascaded", "test.speech2image_R@1")),
    Finding("cascaded_over_chance", "retrieval", "cascaded (through keywords only) retrieves above chance",
            "R@1 8.2 (Base) against 0.1 chance on 1,000 images (R)",
            ("cascaded", "test.speech2image_R@1"), ("cascaded", "chance.speech2image.R@1")),
    Finding("zero_shot_over_chance", "zero_shot", "parallel retrieves captions zero-shot far above chance",
            "speech→text R@1 60.32 vs 0.02 random, SpokenCOCO (S)",
            ("parallel", "test.speech2text_R@1"), ("parallel", "chance.speech2text.R@1")),
    Finding("keywords_over_chance", "keywords", "cascaded keywords hit caption words above chance",
            "mean top-5 hit rate 22.7 (Base), 32.7 (Large), Flickr8k (S)",
            ("cascaded", "test.kw_avg"), ("cascaded", "test.kw_chance")),
    Finding("cif_over_fixed_k", "cif", "CIF keywords ≥ fixed-K keywords (top-5 hit rate)",
            "SpeechCLIP+ abstract: " + paper.PLUS_CLAIMS["cif_keywords"],
            ("cascaded_plus", "test.kw_avg"), ("cascaded", "test.kw_avg"), at_least=True),
    Finding("hybrid_over_parallel", "hybrid", "hybrid's parallel branch ≥ parallel-only on speech→image R@1",
            "SpeechCLIP+ abstract: " + paper.PLUS_CLAIMS["hybrid_retrieval"],
            ("hybrid", "test.parallel_speech2image_R@1"), ("hybrid", "parallel_only_test.speech2image_R@1"),
            at_least=True),
)


def family_value(records: dict, family: str, key: str):
    """One recorded number of a model family (None where its notebook has not run). A hybrid records both branches'
    retrieval: its row in these tables is its parallel branch, so "test.speech2image_R@1" reads
    "test.parallel_speech2image_R@1" (the unprefixed keys follow model.retrieval_branch, the cascaded branch for
    Hybrid)."""
    if family == "hybrid":
        key = parallel_branch_key(key)
    return lookup(records.get(MODEL_NOTEBOOKS[family]), key)


def parallel_branch_key(key: str) -> str:
    """"test.speech2image_R@1" -> "test.parallel_speech2image_R@1" for the retrieval keys of an evaluated split;
    other keys (keywords, parallel_only_test.*, chance) unchanged."""
    split, _, name = key.partition(".")
    if split in ("test", "dev_best", "test_seen_voices") and re.fullmatch(r"(speech2image|image2speech|speech2text|"
                                                                           r"text2speech|mean)_R@\d+", name):
        return f"{split}.parallel_{name}"
    return key


def judge_finding(finding: Finding, records: dict, findings: dict | None = None) -> dict:
    """One row of a "finding reproduced?" table: the claim, what the paper shows, our two numbers, the verdict."""
    ours, against = family_value(records, *finding.a), family_value(records, *finding.b)
    spreads = [seed_spread(findings, fam, key) for fam, key in (finding.a, finding.b)
               if "chance" not in key]  # chance is exact, it has no spread
    known = [s for s in spreads if s is not None]
    noise = math.sqrt(sum(s * s for s in known)) if known else None
    verdict = judge(ours, against, noise, finding.at_least)
    shown = "—" if ours is None or against is None else f"{ours:.1f} vs {against:.1f}"
    return {"finding (paper)": finding.claim, "paper shows": finding.paper_shows, "ours": shown,
            "spread": "—" if noise is None else f"±{noise:.1f}", "reproduced?": verdict}


def judge_all(records: dict, findings: dict | None = None, table: str | None = None) -> dict:
    """{finding key: judge_finding row} for every finding, or those of one table."""
    return {f.key: judge_finding(f, records, findings) for f in FINDINGS if table in (None, f.table)}


def verdict_codes(judged: dict) -> dict:
    """{finding key: 1 yes, 0 no, 0.5 within noise}, leaving out those not run: numbers the regression compares."""
    return {k: VERDICT_CODES[row["reproduced?"]] for k, row in judged.items() if row["reproduced?"] in VERDICT_CODES}


def ratio(value, reference) -> float | None:
    """value / reference, or None where either is missing or the reference is zero."""
    return None if value is None or not reference else value / reference


def _ours(records: dict, family: str, keys, prefix: str = "test") -> dict:
    return {k: family_value(records, family, f"{prefix}.{k}") for k in keys}


def first_value(records: dict, key: str):
    """A value the model notebooks share (chance, the CLIP topline) from the first record that has it."""
    return next((v for v in (lookup(r, key) for r in records.values()) if v is not None), None)


def present(records: dict, families) -> list[str]:
    """The families among those given whose notebook has recorded metrics (the tables leave the others out)."""
    return [f for f in families if records.get(MODEL_NOTEBOOKS[f]) is not None]


def retrieval_table(records: dict) -> dict:
    """{row: {column: value}}: our models, chance, the pocket CLIP topline and the papers' Flickr8k rows.

    Beside the recalls, speech→image R@1 as a multiple of chance (`times_chance`; paper rows: 1,000 test images) and
    as a share of the text→image topline (`share_of_topline`, ours only): the numbers that can meet the papers'.
    """
    chance_r1 = first_value(records, "chance.speech2image.R@1")
    topline_r1 = first_value(records, "clip_topline.text2image_R@1")
    rows = {}
    for family in present(records, MODEL_LABELS):
        row = _ours(records, family, RETRIEVAL_KEYS)
        rows[f"ours: {MODEL_LABELS[family]}"] = {**row, "times_chance": ratio(row["speech2image_R@1"], chance_r1),
                                  "share_of_topline": ratio(row["speech2image_R@1"], topline_r1)}
    rows["ours: chance"] = {k: first_value(records, "chance." + k.replace("_", ".")) for k in RETRIEVAL_KEYS}
    rows["ours: topline, pocket CLIP text↔image"] = {
        k: first_value(records, "clip_topline." + k.replace("speech2image", "text2image").replace("image2speech", "image2text"))
        for k in RETRIEVAL_KEYS}
    paper_chance = 100 / paper.FLICKR8K_TEST_IMAGES
    for name, values in paper.FLICKR8K_RETRIEVAL.items():
        rows[f"paper: SpeechCLIP {name}, Flickr8k (R)"] = {**dict(zip(RETRIEVAL_KEYS, values)),
                                                          "times_chance": values[0] / paper_chance}
    return rows


def zero_shot_table(records: dict) -> dict:
    """{row: {column: value}}: speech↔text retrieval of our parallel and cascaded models, chance, the paper's rows."""
    rows = {f"ours: {MODEL_LABELS[f]}": _ours(records, f, ZERO_SHOT_KEYS) for f in present(records, ("parallel", "cascaded"))}
    chance = first_value(records, "chance.speech2text")
    rows["ours: chance"] = {k: (chance or {}).get(k.split("_", 1)[1]) for k in ZERO_SHOT_KEYS}
    for name, values in paper.ZERO_SHOT.items():
        rows[f"paper: {name}, SpokenCOCO (S)"] = dict(zip(ZERO_SHOT_KEYS, values))
    return rows


def keyword_slot_table(records: dict, slots: int = 8) -> dict:
    """{row: {column: value}}: top-5 keyword hit rate per slot, its mean, chance and mean / chance.

    Cascaded+ has no fixed slots (its keywords fire as the utterance goes), so only its mean is filled in.
    """
    columns = [f"kw_{i}" for i in range(1, slots + 1)]
    rows = {}
    for family in present(records, ("cascaded", "cascaded_plus", "hybrid")):
        row = _ours(records, family, [*columns, "kw_avg", "kw_chance"])
        rows[f"ours: {MODEL_LABELS[family]}"] = {**row, "times_chance": ratio(row["kw_avg"], row["kw_chance"])}
    for name, values in paper.KEYWORD_HITS.items():
        rows[f"paper: {name} (S)"] = {**dict(zip(columns, values)), "kw_avg": paper.KEYWORD_HITS_MEAN[name]}
    return rows


CIF_KEYS = ("kw_avg", "kw_chance", "kw_content_avg", "kw_content_chance", "kw_top1_avg", "kw_top1_chance",
            "speech2image_R@1", "mean_R@10")


def cif_table(records: dict) -> dict:
    """{row: {column: value}}: fixed-K cascaded against Cascaded+ on keywords and retrieval, with the dev mean R@10
    that the released checkpoints' names give for the papers' models (V)."""
    rows = {}
    for family in present(records, ("cascaded", "cascaded_plus")):
        rows[f"ours: {MODEL_LABELS[family]}"] = {**_ours(records, family, CIF_KEYS),
                                                 "dev_mean_R@10": family_value(records, family, "dev_best.mean_R@10")}
    for name in ("Cascaded Large", "Cascaded+ Base", "Cascaded+ Large"):
        rows[f"paper: {name}, Flickr8k dev (V)"] = {"dev_mean_R@10": paper.FLICKR8K_DEV_MEAN_R10[name]}
    return rows


HYBRID_KEYS = ("speech2image_R@1", "speech2image_R@5", "speech2image_R@10", "mean_R@10")


def hybrid_table(records: dict) -> dict:
    """{row: {column: value}}: the hybrid's parallel branch against the parallel-only model (notebook 21's own
    parallel-only numbers, else notebook 10's), with the papers' dev mean R@10 (V)."""
    hybrid, parallel = records.get(MODEL_NOTEBOOKS["hybrid"]), records.get(MODEL_NOTEBOOKS["parallel"])
    rows = {f"ours: {MODEL_LABELS[f]}": {**_ours(records, f, HYBRID_KEYS),
                                         "dev_mean_R@10": family_value(records, f, "dev_best.mean_R@10")}
            for f in present(records, ["hybrid"])}
    if lookup(hybrid, "parallel_only_test") is not None:
        only = {k: lookup(hybrid, f"parallel_only_test.{k}") for k in HYBRID_KEYS}
    else:
        only = {**{k: lookup(parallel, f"test.{k}") for k in HYBRID_KEYS},
                "dev_mean_R@10": lookup(parallel, "dev_best.mean_R@10")}
    rows["ours: parallel only"] = only
    for name in ("Parallel Large", "Hybrid Base", "Hybrid Large", "Hybrid+ Base", "Hybrid+ Large"):
        rows[f"paper: {name}, Flickr8k dev (V)"] = {"dev_mean_R@10": paper.FLICKR8K_DEV_MEAN_R10[name]}
    return rows


TABLES = {"retrieval": retrieval_table, "zero_shot": zero_shot_table, "keywords": keyword_slot_table,
          "cif": cif_table, "hybrid": hybrid_table}


def missing_notebooks(records: dict) -> list[str]:
    """The model notebooks whose metrics are not in ARTIFACTS_DIR, each with how to produce them."""
    return [f"{nb}: run notebooks/{nb}.ipynb with the same ARTIFACTS_DIR" for nb, r in records.items() if r is None]


def ours_only(rows: dict) -> dict:
    """The table's rows of our own run, numbers only, keyed by family (or "chance", "topline", "parallel_only"),
    rows with no number left out: what notebook 30 records."""
    keys = {f"ours: {label}": family for family, label in MODEL_LABELS.items()}
    out = {}
    for label, row in rows.items():
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        if label.startswith("ours: ") and numbers:
            out[keys.get(label) or label.removeprefix("ours: ").split(",")[0].replace(" ", "_")] = numbers
    return out

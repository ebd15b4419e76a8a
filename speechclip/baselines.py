"""Stored regression baselines: flattening notebook metrics, comparing a run with a baseline, refreshing it.

The file format and the rules (`higher`, `lower`, `exact`, `close`, `info`) are described in
`speechclip/regression.py`, the command that uses them, and in CONTRIBUTING.md ("Regression runs").
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

RULES = ("higher", "lower", "exact", "close", "info")
FAILING = ("REGRESSION", "CHANGED", "MISSING")  # statuses that fail a run
INFO_WORDS = ("wall", "elapsed")  # wall times vary with the machine and its load: shown, never compared
# Reference values, neither better nor worse when they move: compared two-sided.
CLOSE_WORDS = ("chance", "untrained", "random_init", "majority", "prior", "padding")
HIGHER_WORDS = ("r@", "recall", "acc", "hit", "kw_", "topline", "probe")
LOWER_WORDS = ("loss", "error", "perplexity")


def flatten(record, prefix: str = "") -> dict:
    """Nested metrics JSON -> {"key.path": number}; list items by index; strings and nulls dropped."""
    if isinstance(record, (bool, int, float)):
        return {prefix: record}
    if isinstance(record, dict):
        items = record.items()
    elif isinstance(record, list):
        items = enumerate(record)
    else:
        return {}
    out = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def infer_rule(key: str, value) -> str:
    """The rule a new metric gets from its name and type; edit the baseline file where the guess is wrong."""
    k = key.lower()
    if any(w in k for w in INFO_WORDS):
        return "info"
    if isinstance(value, (bool, int)):
        return "exact"  # counts, shapes, steps, parameter counts
    if any(w in k for w in CLOSE_WORDS):
        return "close"
    if any(w in k for w in LOWER_WORDS):
        return "lower"
    if any(w in k for w in HIGHER_WORDS):
        return "higher"
    return "close"


def default_tol(rule: str, value) -> float | None:
    """Exact rules allow nothing; float rules allow rounding noise only until a spread is measured."""
    if rule == "info":
        return None
    if rule == "exact":
        return 0
    return max(1e-9, 1e-6 * abs(value))


@dataclass
class Row:
    key: str
    rule: str
    baseline: float | None
    run: float | None
    tol: float | None
    status: str  # ok, REGRESSION, CHANGED, MISSING, better, new, info, differs (other arithmetic: not enforced)

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    @property
    def message(self) -> str:
        if self.status == "MISSING":
            return f"{self.key}: in the baseline ({_fmt(self.baseline)}) but not recorded by this run"
        if self.status == "better":
            return f"{self.key}: better than baseline — refresh? {_fmt(self.baseline)} -> {_fmt(self.run)}"
        if self.status == "new":
            return f"{self.key}: new metric {_fmt(self.run)}, not in the baseline"
        if self.status == "differs":
            return f"{self.key}: {_fmt(self.baseline)} -> {_fmt(self.run)} (other arithmetic, not compared)"
        what = {"REGRESSION": "regressed", "CHANGED": "changed"}.get(self.status, self.status)
        return (f"{self.key}: {what} ({self.rule}): baseline {_fmt(self.baseline)}, run {_fmt(self.run)}, "
                f"tolerance {_fmt(self.tol)}")


def _status(rule: str, baseline, run, tol) -> str:
    if rule == "info":
        return "info"
    diff = run - baseline
    slack = (tol or 0) + 1e-12 * max(1.0, abs(baseline))
    if rule == "exact":
        return "ok" if run == baseline else "CHANGED"
    if rule == "close":
        return "ok" if abs(diff) <= slack else "CHANGED"
    sign = 1 if rule == "higher" else -1
    if sign * diff < -slack:
        return "REGRESSION"
    return "better" if sign * diff > slack else "ok"


def compare(run: dict, baseline: dict, notebooks=None, values: bool = True) -> list[Row]:
    """Rows for every baseline metric and every new run metric; `notebooks` limits both to those notebooks.

    values=False (a run on other arithmetic than the baseline's, `regression.compare_values`): a value outside its
    tolerance is reported as "differs" and does not fail; a metric the run no longer records still does.
    """
    entries = baseline.get("metrics", {})

    def wanted(key):
        return notebooks is None or key.split("/", 1)[0] in notebooks

    rows = []
    for key, entry in entries.items():
        if not wanted(key):
            continue
        rule, value, tol = entry.get("rule", "close"), entry.get("value"), entry.get("tol")
        if rule not in RULES:
            raise ValueError(f"{key}: unknown rule {rule!r}; choose one of {RULES}")
        if key not in run:
            rows.append(Row(key, rule, value, None, tol, "info" if rule == "info" else "MISSING"))
        else:
            status = _status(rule, value, run[key], tol)
            if not values and status in ("REGRESSION", "CHANGED", "better"):
                status = "differs"
            rows.append(Row(key, rule, value, run[key], tol, status))
    rows += [Row(k, infer_rule(k, v), None, v, None, "new") for k, v in run.items() if k not in entries and wanted(k)]
    return rows


def spread(runs: list[dict]) -> dict:
    """max - min of every number present in all `runs` (flattened): the run-to-run or seed-to-seed spread."""
    keys = set.intersection(*(set(r) for r in runs)) if runs else set()
    return {k: max(r[k] for r in runs) - min(r[k] for r in runs) for k in keys
            if not any(isinstance(r[k], bool) for r in runs)}


def _round_up(x: float, digits: int = 4) -> float:
    return math.ceil(round(x * 10 ** digits, 6)) / 10 ** digits  # round() first: 1.5 * 0.2 is 0.30000000000000004


def updated(run: dict, old: dict | None = None, spreads: dict | None = None, factor: float = 1.5,
            notebooks=None) -> dict:
    """A refreshed baseline: run values, the old file's rules and tolerances where it had the metric, inferred ones
    where not; tolerances of compared numbers widened (never narrowed) to `factor` x the measured spread, and an
    `exact` integer that the spread shows varying (a best layer, an argmax) becomes `close`. Metrics of notebooks
    outside `notebooks` are kept from the old file; metrics the run no longer records are dropped."""
    old_metrics = (old or {}).get("metrics", {})
    metrics = {k: v for k, v in old_metrics.items() if notebooks is not None and k.split("/", 1)[0] not in notebooks}
    for key, value in run.items():
        prev = old_metrics.get(key)
        rule = prev["rule"] if prev else infer_rule(key, value)
        tol = prev.get("tol") if prev else default_tol(rule, value)
        if spreads and spreads.get(key, 0) > 0 and rule == "exact":
            rule = "close"
        if spreads and key in spreads and rule in ("higher", "lower", "close"):
            tol = max(tol or 0, _round_up(factor * spreads[key]))
        metrics[key] = {"value": value, "rule": rule} if rule == "info" else {"value": value, "tol": tol, "rule": rule}
    return {"_about": dict((old or {}).get("_about", {})), "metrics": metrics}


def load(path: Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def save(baseline: dict, path: Path) -> None:
    """JSON with one line per metric, so that a refresh reads as a short diff."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    about = json.dumps(baseline.get("_about", {}), indent=1, ensure_ascii=False).replace("\n", "\n ")
    lines = [f'  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}' for k, v in baseline["metrics"].items()]
    path.write_text('{\n "_about": ' + about + ',\n "metrics": {\n' + ",\n".join(lines) + "\n }\n}\n")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or isinstance(v, int):
        return str(int(v))
    return f"{v:.6g}"


def table(rows: list[Row], wall: dict | None = None) -> str:
    """A plain-text table: metric, rule, baseline, run, difference, tolerance, status; then wall times per notebook."""
    head = ("metric", "rule", "baseline", "run", "diff", "tol", "status")
    body = []
    for r in rows:
        diff = "-" if r.baseline is None or r.run is None else f"{r.run - r.baseline:+.4g}"
        status = "better than baseline — refresh?" if r.status == "better" else r.status
        body.append((r.key, r.rule, _fmt(r.baseline), _fmt(r.run), diff, _fmt(r.tol), status))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i in (0, 1, 6) else str(c).rjust(w) for i, (c, w) in
                       enumerate(zip(line, widths))).rstrip() for line in [head, *body]]
    if wall:
        lines += ["", "notebook wall seconds (not compared): " +
                  ", ".join(f"{k} {v:.1f}" for k, v in wall.items())]
    return "\n".join(lines)

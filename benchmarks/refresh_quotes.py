"""Rewrite the numbers that notebooks' Markdown quotes from a run, from the recorded metrics of that run.

Each quoted group of numbers in a notebook's Markdown is followed by a comment naming the metrics it quotes
(`<!-- 10_parallel/test.speech2image_R@1 ... -->`, see tests/test_notebook_numbers.py). After the `cpu` baseline is
refreshed from a new profiled run, this replaces each quoted number by the recorded value at the precision it is
printed with, in the jupytext `.py` twins; then `jupytext --sync notebooks/*.ipynb` carries the text over. Prose
that interprets the numbers ("about a fifth") is not touched: read the diff.

    python benchmarks/refresh_quotes.py --baseline tests/baselines/cpu.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_notebook_numbers import COMMENT, NUMBER, UNRECORDED, value_of  # noqa: E402  one parser for both


def refresh_line(line: str, metrics: dict) -> str:
    out, last = [], 0
    for m in COMMENT.finditer(line):
        keys = m.group(1).split()
        segment = line[last:m.start()]
        if keys != [UNRECORDED] and all(k.removesuffix("*100") in metrics for k in keys):
            found = list(NUMBER.finditer(segment))[-len(keys):]
            if len(found) == len(keys):
                pieces, pos = [], 0
                for key, num in zip(keys, found):
                    printed = num.group(0)
                    decimals = len(printed.split(".")[1])
                    value = f"{value_of(key, metrics):,.{decimals}f}" if "," in printed else \
                        f"{value_of(key, metrics):.{decimals}f}"
                    pieces += [segment[pos:num.start()], value]
                    pos = num.end()
                segment = "".join(pieces) + segment[pos:]
        out += [segment, m.group(0)]
        last = m.end()
    return "".join(out) + line[last:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=str(ROOT / "tests" / "baselines" / "cpu.json"))
    p.add_argument("notebooks", nargs="*", help="jupytext .py files (default: notebooks/[0-9]*.py)")
    args = p.parse_args()
    metrics = {k: e["value"] for k, e in json.loads(Path(args.baseline).read_text())["metrics"].items()}
    for path in [Path(n) for n in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        text = path.read_text(encoding="utf-8")
        new = "\n".join(refresh_line(line, metrics) if line.startswith("#") and "<!--" in line else line
                        for line in text.split("\n"))
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"refreshed {path}")


if __name__ == "__main__":
    main()

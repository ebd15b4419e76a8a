"""Every number a notebook's "Sample output" text quotes from a run matches the run it came from.

The quoted run is the tutorial's (`PRESET="pocket"`), stored as the `cpu` regression baseline
(`tests/baselines/cpu.json`, written by `make regression PRESET=cpu UPDATE=1` or `--compare-only` on a profiled run).
In the Markdown, each quoted group of numbers is followed by an HTML comment, invisible in Jupyter, naming the
metrics it quotes in order:

    speech→image R@1 / 5 / 10 = 2.6 / 11.0 / 18.2 %<!-- 10_parallel/test.speech2image_R@1 ... R@10 -->

A key may end in `*100` (a fraction quoted as a percentage); `<!-- unrecorded -->` marks numbers a cell shows
that are not recorded metrics (a constant, a value on a random batch), so they are covered by choice. The numbers checked are the last decimal numbers
before the comment on its line, one per key, compared at the precision they are printed with. And every decimal
number in a "Sample output" paragraph must be covered by such a comment, so a new quote cannot go unchecked.
When the baseline is refreshed, this test names each quote that went stale.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from speechclip.baselines import flatten

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "tests" / "baselines" / "cpu.json"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
COMMENT = re.compile(r"<!--\s*(.*?)\s*-->")
UNRECORDED = "unrecorded"
NUMBER = re.compile(r"(?<![\w.§])-?\d[\d,]*\.\d+(?![\w.])")  # decimals only: counts and seeds are settings


def markdown_paragraphs(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of each Markdown paragraph of a jupytext percent file, '# ' prefixes removed."""
    out, cell, para, start = [], None, [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# %%"):
            cell = "markdown" if "[markdown]" in line else "code"
        if cell != "markdown" or line.startswith("# %%"):
            if para:
                out.append((start, "\n".join(para)))
            para = []
            continue
        text = line[2:] if line.startswith("# ") else line.lstrip("#")
        if not text.strip():
            if para:
                out.append((start, "\n".join(para)))
            para = []
        else:
            start = start if para else n
            para.append(text)
    if para:
        out.append((start, "\n".join(para)))
    return out


def quotes(text: str) -> list[tuple[list[str], list[str]]]:
    """[(keys, the numbers they quote)] for each metrics comment in a paragraph."""
    found = []
    for line in text.splitlines():
        last = 0
        for m in COMMENT.finditer(line):
            keys = m.group(1).split()
            numbers = NUMBER.findall(line[last:m.start()])
            if keys == [UNRECORDED]:  # shown by a cell but not a recorded metric (a constant, a random batch)
                found.append(([UNRECORDED] * len(numbers), numbers))
            else:
                found.append((keys, numbers[-len(keys):] if len(numbers) >= len(keys) else numbers))
            last = m.end()
    return found


def value_of(key: str, metrics: dict) -> float:
    scale = 100.0 if key.endswith("*100") else 1.0
    return metrics[key.removesuffix("*100")] * scale


def matches(printed: str, value: float) -> bool:
    decimals = len(printed.split(".")[1])
    return abs(float(printed.replace(",", "")) - value) <= 0.5 * 10 ** -decimals + 1e-9


def test_the_paragraph_and_quote_parsers():
    md = "# %% [markdown]\n# Sample output: R@1 2.6 / 11.0 %<!-- a/x b/y -->, loss 0.71<!-- c/z*100 -->\n# next\n"
    path = ROOT / "tests" / "_parse_check.tmp"
    path.write_text(md)
    try:
        (line, text), = markdown_paragraphs(path)
    finally:
        path.unlink()
    assert line == 2 and text.endswith("next")
    assert quotes(text) == [(["a/x", "b/y"], ["2.6", "11.0"]), (["c/z*100"], ["0.71"])]
    assert matches("2.6", 2.64) and not matches("2.6", 2.66) and matches("56.5", value_of("k*100", {"k": 0.5652}))


@pytest.mark.skipif(not BASELINE.exists(), reason="no cpu baseline: make regression PRESET=cpu UPDATE=1")
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_sample_output_numbers_match_the_recorded_run(notebook):
    metrics = {k: e["value"] for k, e in json.loads(BASELINE.read_text())["metrics"].items()}
    stale, unchecked = [], []
    for line, text in markdown_paragraphs(notebook):
        if "Sample output" not in text:
            continue
        covered = 0
        for keys, numbers in quotes(text):
            assert len(numbers) == len(keys), f"{notebook.name}:{line}: {keys} quote {numbers}"
            for key, printed in zip(keys, numbers):
                if key == UNRECORDED:
                    continue
                assert key.removesuffix("*100") in metrics, f"{notebook.name}:{line}: no metric {key} in {BASELINE.name}"
                if not matches(printed, value_of(key, metrics)):
                    stale.append(f"{notebook.name}:{line}: says {printed}, the run recorded {key} = "
                                 f"{value_of(key, metrics):.4g}")
            covered += len(numbers)
        plain = COMMENT.sub(" ", text)
        if len(NUMBER.findall(plain)) > covered:
            unchecked.append(f"{notebook.name}:{line}: {len(NUMBER.findall(plain)) - covered} decimal numbers "
                             f"without a <!-- metric --> comment: {NUMBER.findall(plain)}")
    assert not stale, "stale Sample output numbers:\n" + "\n".join(stale)
    assert not unchecked, "\n".join(unchecked)


def test_flatten_gives_the_keys_the_comments_use():
    assert flatten({"test": {"speech2image_R@1": 2.6}, "probe": {"acc": [0.1, 0.2]}}) == {
        "test.speech2image_R@1": 2.6, "probe.acc.0": 0.1, "probe.acc.1": 0.2}

"""Small helpers every notebook repeats: shape checks, the untrained-at-chance check, saving metrics and figures.

They keep the notebooks' cells about the lesson; each is introduced where notebooks 00-11 first use it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def check_shape(t, shape) -> tuple:
    """Assert a tensor's shape and return it for printing: the running shape check of every notebook."""
    assert tuple(t.shape) == tuple(shape), f"expected {tuple(shape)}, got {tuple(t.shape)}"
    return tuple(t.shape)


def chance_tolerance(expected: float, queries: int, n_se: float = 5.0, slack: float = 2.0) -> float:
    """Allowed distance (points) of a recall in percent from chance: n_se binomial standard errors plus slack."""
    p = expected / 100
    return 100 * n_se * math.sqrt(p * (1 - p) / queries) + slack


def assert_near_chance(recall: dict, chance: dict, queries: dict, n_se: float = 5.0, slack: float = 2.0) -> dict:
    """Assert an untrained model's recall sits at chance, per direction and k (notebooks 10, 11).

    recall: {"speech2image_R@1": ...} as from `evaluation.evaluate`; chance: {direction: {"R@1": ...}};
    queries: {direction: number of queries}. Returns {(direction, k): {"untrained", "chance", "tolerance"}}.
    """
    rows = {}
    for direction, n in queries.items():
        for k, expected in chance[direction].items():
            got, tolerance = recall[f"{direction}_{k}"], chance_tolerance(expected, n, n_se, slack)
            assert abs(got - expected) <= tolerance, (direction, k, got, expected)
            rows[(direction, k)] = {"untrained": got, "chance": expected, "tolerance": tolerance}
    return rows


def save_metrics(name: str, metrics: dict, artifacts_dir, indent: int = 1) -> Path:
    """Write a notebook's headline numbers to <artifacts_dir>/metrics/<name>.json and return the path."""
    out = Path(artifacts_dir) / "metrics" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=indent))
    return out


def save_figure(fig, path, dpi: int = 120, bbox_inches: str | None = "tight") -> None:
    """Save a notebook figure (figures/<notebook-number>_*.png), creating its folder.

    Returns nothing, so a cell that ends with it shows the figure and no path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches=bbox_inches)

"""Synthetic scenes: one to three coloured shapes on a plain background, sampled in one-attribute families.

Introduced in notebooks/00_setup_and_data.ipynb. A family is a base scene plus variants that each change exactly
one attribute (colour, shape, size or position), so a retrieval pool drawn from families is full of near-misses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "ring")
COLOURS = {
    "red": (215, 35, 35), "blue": (35, 75, 215), "green": (35, 155, 55), "yellow": (245, 215, 35),
    "black": (20, 20, 20), "white": (250, 250, 250), "purple": (125, 45, 170), "orange": (245, 130, 25),
    "pink": (245, 145, 195), "brown": (115, 70, 30),
}
SIZES = ("big", "small")
POSITIONS = ("left", "right", "top", "bottom", "middle")  # layout of a one-object scene
ARRANGEMENTS = ("row", "column")  # layout of a multi-object scene; objects are listed left-to-right / top-to-bottom
KINDS = ("colour", "shape", "size", "position")  # the attribute a family variant changes

IMAGE_SIZE = 224
BACKGROUND = (165, 168, 172)  # mid grey, so both white and black objects stand out
_SUPERSAMPLE = 3  # draw large and downsample: anti-aliased edges without per-shape AA code
_RADIUS = {"big": 36.0, "small": 18.0}
_SINGLE_CENTRES = {"left": (58, 112), "right": (166, 112), "top": (112, 58), "bottom": (112, 166),
                   "middle": (112, 112)}


@dataclass(frozen=True, order=True)
class SceneObject:
    """One shape: what a caption says about it."""

    shape: str
    colour: str
    size: str


@dataclass(frozen=True, order=True)
class Scene:
    """A scene spec: objects in reading order and a layout (a position for one object, row/column for more)."""

    objects: tuple[SceneObject, ...]
    layout: str

    def to_dict(self) -> dict:
        return {"layout": self.layout, "objects": [vars(o).copy() for o in self.objects]}


def _distinct(objects) -> bool:
    # two objects with the same colour and shape could not be told apart by a caption
    return len({(o.colour, o.shape) for o in objects}) == len(objects)


def random_object(rng: np.random.Generator) -> SceneObject:
    """Draw one object with uniform shape, colour and size."""
    return SceneObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(SIZES)))


def random_scene(rng: np.random.Generator) -> Scene:
    """Draw a scene of one (20%), two (50%) or three (30%) distinguishable objects."""
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
    while True:
        objects = tuple(random_object(rng) for _ in range(n))
        if _distinct(objects):
            break
    layout = str(rng.choice(POSITIONS if n == 1 else ARRANGEMENTS))
    return Scene(objects, layout)


def _replace(objects, i, **change):
    new = dict(vars(objects[i]), **change)
    return objects[:i] + (SceneObject(**new),) + objects[i + 1:]


def mutate(scene: Scene, kind: str, rng: np.random.Generator) -> Scene | None:
    """Change exactly one attribute of `scene` (one of KINDS); None when the change would be ambiguous."""
    objs, i = scene.objects, int(rng.integers(len(scene.objects)))
    if kind == "colour":
        objs = _replace(objs, i, colour=str(rng.choice([c for c in COLOURS if c != objs[i].colour])))
    elif kind == "shape":
        objs = _replace(objs, i, shape=str(rng.choice([s for s in SHAPES if s != objs[i].shape])))
    elif kind == "size":
        objs = _replace(objs, i, size="small" if objs[i].size == "big" else "big")
    elif len(objs) == 1:
        return Scene(objs, str(rng.choice([p for p in POSITIONS if p != scene.layout])))
    elif rng.random() < 0.25:  # same order, other axis: "left of" becomes "above"
        return Scene(objs, "column" if scene.layout == "row" else "row")
    else:  # swap two neighbours: "a circle left of a square" becomes "a square left of a circle"
        j = min(i, len(objs) - 2)
        objs = objs[:j] + (objs[j + 1], objs[j]) + objs[j + 2:]
    return Scene(objs, scene.layout) if _distinct(objs) else None


def scene_difference(a: Scene, b: Scene) -> list[str]:
    """Name every attribute in which two scenes differ (one entry per changed object attribute)."""
    if len(a.objects) != len(b.objects):
        return ["count"]
    if len(a.objects) > 1 and a != b and sorted(a.objects) == sorted(b.objects):
        return ["position"]  # the same objects rearranged
    diffs = ["position"] if a.layout != b.layout else []
    for oa, ob in zip(a.objects, b.objects):
        diffs += [k for k in ("colour", "shape", "size") if getattr(oa, k) != getattr(ob, k)]
    return diffs


def sample_families(n_images: int, rng: np.random.Generator, taken: set, family_size: int = 5) -> list[tuple]:
    """Draw `n_images` unseen scenes as families: (scene, family index, changed attribute or None for the base)."""
    out, family = [], 0
    while len(out) < n_images:
        base = random_scene(rng)
        if base in taken:
            continue
        taken.add(base)
        out.append((base, family, None))
        for kind in rng.permutation(KINDS)[: family_size - 1]:
            for _ in range(20):
                variant = mutate(base, str(kind), rng)
                if variant is not None and variant not in taken and len(out) < n_images:
                    taken.add(variant)
                    out.append((variant, family, str(kind)))
                    break
        family += 1
    return out


def _centres(scene: Scene, rng: np.random.Generator) -> list[tuple[float, float]]:
    n = len(scene.objects)
    if n == 1:
        x, y = _SINGLE_CENTRES[scene.layout]
        return [(x + rng.uniform(-6, 6), y + rng.uniform(-6, 6))]
    step = 92 if n == 2 else 72
    along = [112 + step * (k - (n - 1) / 2) + rng.uniform(-4, 4) for k in range(n)]
    across = [112 + rng.uniform(-8, 8) for _ in range(n)]  # small wobble, never enough to read as above/below
    return list(zip(along, across)) if scene.layout == "row" else list(zip(across, along))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring_points(radii, start=-90.0):
        step = 360.0 / len(radii)
        return [(cx + q * r * math.cos(math.radians(start + k * step)),
                 cy + q * r * math.sin(math.radians(start + k * step))) for k, q in enumerate(radii)]

    if shape == "triangle":
        return [(x, y + 0.15 * r) for x, y in ring_points([1.0] * 3)]  # centre the visual mass
    if shape == "star":
        return ring_points([1.0, 0.45] * 5)
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.65 * r, cy), (cx, cy + r), (cx - 0.65 * r, cy)]
    if shape == "cross":
        a, b = 0.32 * r, 0.95 * r
        corners = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b), (-a, -b), (-a, -a), (-b, -a), (-b, a), (-a, a),
                   (-a, b)]
        return [(cx + x, cy + y) for x, y in corners]
    if shape == "heart":  # the classic parametric heart, scaled to radius r
        ts = np.linspace(0, 2 * math.pi, 60, endpoint=False)
        xs = 16 * np.sin(ts) ** 3
        ys = 13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts)
        return [(cx + x * r / 17, cy - (y + 2.5) * r / 17) for x, y in zip(xs, ys)]
    raise ValueError(f"unknown polygon shape {shape!r}")


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, cx: float, cy: float, r: float, fill) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if obj.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif obj.shape == "ring":
        draw.ellipse(box, outline=fill, width=max(1, round(0.38 * r)))
    elif obj.shape == "square":
        s = 0.85 * r
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r), fill=fill)


def render(scene: Scene, rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    """Draw a scene as a 224x224 RGB image; also return each object's centre and radius in pixels."""
    k = _SUPERSAMPLE
    image = Image.new("RGB", (IMAGE_SIZE * k, IMAGE_SIZE * k), BACKGROUND)
    draw = ImageDraw.Draw(image)
    scale = 0.85 if len(scene.objects) == 3 else 1.0  # three big shapes must still fit in a row
    placements = []
    for obj, (cx, cy) in zip(scene.objects, _centres(scene, rng)):
        r = _RADIUS[obj.size] * scale * rng.uniform(0.92, 1.08)
        # a little colour jitter keeps siblings from being pixel-identical outside the changed attribute
        fill = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in COLOURS[obj.colour])
        _draw(draw, obj, cx * k, cy * k, r * k, fill)
        placements.append({"center": [round(cx, 1), round(cy, 1)], "radius": round(r, 1)})
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), placements

"""Five varied English captions per synthetic scene, built from templates and synonyms.

Introduced in notebooks/00_setup_and_data.ipynb. Every word a caption can contain is a single subword of CLIP's BPE
vocabulary, so a cascaded model's keywords can in principle hit each content word exactly (tests check this).
"""
from __future__ import annotations

import re

import numpy as np

from speechclip.synth.scenes import COLOURS, SHAPES, Scene, SceneObject

SIZE_WORDS = {"big": ("big", "large", "huge"), "small": ("small", "little", "tiny")}
PLACE_PHRASES = {
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "up at the top"),
    "bottom": ("at the bottom", "near the bottom", "down at the bottom"),
    "middle": ("in the middle", "in the center", "in the centre"),
}
# relation of the first-listed object to the second, and of the second to the first
RELATIONS = {
    "row": (("to the left of", "left of", "on the left of", "next to"),
            ("to the right of", "right of", "on the right of", "beside")),
    "column": (("above", "over", "on top of", "higher than"),
               ("below", "under", "beneath", "underneath")),
}
# the ends of each arrangement, for captions that place objects instead of relating them
ENDS = {"row": ("left", "right"), "column": ("top", "bottom")}
SWEEPS = {"row": ("from left to right", "going from left to right"),
          "column": ("from top to bottom", "going from top to bottom")}

ONE_TEMPLATES = ("{a} {place}", "there is {a} {place}", "{place} there is {a}", "a picture of {a} {place}",
                 "{a} is shown {place}", "an image with {a} {place}", "{a} sits {place}", "a drawing of {a} {place}")
TWO_TEMPLATES = ("{a} {rel} {b}", "there is {a} {rel} {b}", "{a} sits {rel} {b}", "{a} is {rel} {b}",
                 "a picture of {a} {rel} {b}", "{a} placed {rel} {b}", "an image of {a} {rel} {b}",
                 "{first} {end0} and {second} {end1}")
THREE_TEMPLATES = ("{o0}, {o1} and {o2} {sweep}", "{sweep} there is {o0}, {o1} and {o2}",
                   "{o0} {end0}, {o1} in the middle and {o2} {end1}", "{o0} {rel} {o1} which is {rel} {o2}",
                   "three shapes {sweep}: {o0}, {o1} and {o2}", "a picture of {o0}, {o1} and {o2} {sweep}")

CONTENT_WORDS = tuple(sorted(
    ({w for syn in SIZE_WORDS.values() for w in syn} | set(COLOURS) | set(SHAPES)
     | {w for phrases in PLACE_PHRASES.values() for p in phrases for w in p.split()}
     | {w for pair in RELATIONS.values() for side in pair for p in side for w in p.split()})
    - {"the", "of", "to", "at", "on", "in"}))


def caption_words(caption: str) -> list[str]:
    """The spoken words of a caption, lowercase, punctuation dropped (the CTM lists exactly these)."""
    return re.findall(r"[a-z]+", caption.lower())


def all_template_words() -> set[str]:
    """Every word any caption can contain."""
    texts = [*ONE_TEMPLATES, *TWO_TEMPLATES, *THREE_TEMPLATES, *CONTENT_WORDS,
             *(p for v in PLACE_PHRASES.values() for p in v), *(p for v in SWEEPS.values() for p in v),
             *(p for pair in RELATIONS.values() for side in pair for p in side)]
    words = {w for t in texts for w in caption_words(re.sub(r"\{\w+\}", " ", t))}
    return words | {"a"}


def noun_phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    """'a big red circle' with a random size synonym."""
    return f"a {rng.choice(SIZE_WORDS[obj.size])} {obj.colour} {obj.shape}"


def _one(scene: Scene, template: str, rng) -> str:
    return template.format(a=noun_phrase(scene.objects[0], rng), place=rng.choice(PLACE_PHRASES[scene.layout]))


def _two(scene: Scene, template: str, rng) -> str:
    before, after = RELATIONS[scene.layout]
    first, second = (noun_phrase(o, rng) for o in scene.objects)
    end0, end1 = (rng.choice(PLACE_PHRASES[e]) for e in ENDS[scene.layout])
    if rng.random() < 0.5:  # speak about the second object first: "a blue square below a red circle"
        a, rel, b = second, rng.choice(after), first
    else:
        a, rel, b = first, rng.choice(before), second
    return template.format(a=a, rel=rel, b=b, first=first, second=second, end0=end0, end1=end1)


def _three(scene: Scene, template: str, rng) -> str:
    o0, o1, o2 = (noun_phrase(o, rng) for o in scene.objects)
    end0, end1 = (rng.choice(PLACE_PHRASES[e]) for e in ENDS[scene.layout])
    rel = RELATIONS[scene.layout][0][int(rng.integers(3))]  # the vague "next to" cannot chain an order
    return template.format(o0=o0, o1=o1, o2=o2, sweep=rng.choice(SWEEPS[scene.layout]), end0=end0, end1=end1,
                           rel=rel)


def make_captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` distinct captions for a scene, each from a different template."""
    templates, fill = {1: (ONE_TEMPLATES, _one), 2: (TWO_TEMPLATES, _two), 3: (THREE_TEMPLATES, _three)}[
        len(scene.objects)]
    order = rng.permutation(len(templates))
    captions: list[str] = []
    for k in order[:n]:
        for _ in range(10):  # a repeated draw of synonyms is rare; retry rather than emit a duplicate
            text = fill(scene, templates[k], rng)
            if text not in captions:
                captions.append(text)
                break
    if len(captions) < n:
        raise RuntimeError(f"could not draw {n} distinct captions for {scene}")
    return captions

"""Write a seeded synthetic spoken-caption corpus in exactly the Flickr8k Audio Captions layout (CONTRIBUTING.md).

Introduced in notebooks/00_setup_and_data.ipynb. Every random choice of an image draws from a generator seeded by
(seed, image index), so the files are byte-identical for any number of worker processes. metadata.json is
written last and marks the corpus complete.

Voices: train and dev are spoken by 180 training speakers, the test split by 8 held-out speakers that never
speak in train or dev (other accents, voice variants and prosody), so test numbers say how a model does on new
voices. The sub-folder ``seen_voices/`` is a second corpus in the same layout holding only the test split, spoken
by training speakers (the same audio the test split had before held-out voices): retrieval on both shows the gap.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs into one folder are then the caller's problem
    fcntl = None

from speechclip.corpora import SEEN_VOICES, SPLITS  # SEEN_VOICES: the test split again, in training voices
from speechclip.synth import scenes, tts
from speechclip.synth.captions import make_captions

GENERATOR_VERSION = "4"  # 3: test split in held-out voices, seen_voices/ copy; 4: 180 training voices
CORPUS_PRESETS = {"smoke": (24, 8, 8), "cpu": (1500, 250, 500), "flickr8k": (6000, 1000, 1000)}  # images per split
CAPTIONS_PER_IMAGE = 5
REPO_ROOT = Path(__file__).resolve().parents[2]
_IN_PROGRESS = ".synthetic_in_progress"  # names a half-written corpus that is safe to delete
# metadata.json first: a corpus being replaced must stop looking complete before anything else goes
_OUTPUTS = ("metadata.json", SEEN_VOICES, "Images", "flickr_audio", "Flickr8k.token.txt", "flickr_8k.ctm",
            *(f"Flickr_8k.{s}Images.txt" for s in SPLITS))


@dataclass(frozen=True)
class ImagePlan:
    """Everything decided about one image before any rendering or speech."""

    index: int
    image_id: str
    split: str
    family: str
    variant: str | None  # the attribute this image changes relative to its family's base; None for the base
    scene: scenes.Scene
    captions: tuple[str, ...]
    speakers: tuple[str, ...]
    seen_speakers: tuple[str, ...] = ()  # test split only: the training speakers of the seen_voices/ copy


def plan_corpus(preset: str, seed: int) -> list[ImagePlan]:
    """Scenes, captions and speakers of every image; unique scenes across all splits."""
    if preset not in CORPUS_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(CORPUS_PRESETS)}")
    scene_rng, taken, plans = np.random.default_rng([seed, 0]), set(), []
    for split, n_images in zip(SPLITS, CORPUS_PRESETS[preset]):
        for scene, family, variant in scenes.sample_families(n_images, scene_rng, taken):
            index = len(plans) + 1
            rng = np.random.default_rng([seed, 1, index])
            captions = tuple(make_captions(scene, rng, CAPTIONS_PER_IMAGE))
            seen = tuple(tts.SPEAKERS[int(k)].name for k in rng.choice(len(tts.SPEAKERS), CAPTIONS_PER_IMAGE,
                                                                          replace=False))
            speakers = seen
            if split == "test":  # drawn after the training voices, so train and dev stay as they were
                speakers = tuple(tts.HELD_OUT_SPEAKERS[int(k)].name
                                 for k in rng.choice(len(tts.HELD_OUT_SPEAKERS), CAPTIONS_PER_IMAGE, replace=False))
            plans.append(ImagePlan(index, f"syn{index:05d}", split, f"{split}{family:04d}", variant, scene, captions,
                                   speakers, seen if split == "test" else ()))
    return plans


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)  # processes give the parallelism; threads would only contend
    tts.engine()


def _make_image(job: tuple[ImagePlan, int, str]) -> tuple[list[str], float, list[dict]]:
    """Render one image and speak its captions; return its CTM lines, audio seconds and object placements."""
    plan, seed, root = job
    image, placements = scenes.render(plan.scene, np.random.default_rng([seed, 2, plan.index]))
    image.save(Path(root, "Images", f"{plan.image_id}.jpg"), quality=90)
    speakers = {s.name: s for s in (*tts.SPEAKERS, *tts.HELD_OUT_SPEAKERS)}
    ctm, seconds = [], 0.0
    for n, (caption, speaker) in enumerate(zip(plan.captions, plan.speakers)):
        utt = tts.synthesize(caption, speakers[speaker], np.random.default_rng([seed, 3, plan.index, n]))
        sf.write(Path(root, "flickr_audio", "wavs", f"{plan.image_id}_{n}.wav"), utt.wav, utt.sample_rate,
                 subtype="PCM_16")
        seconds += len(utt.wav) / utt.sample_rate
        ctm += [f"{plan.image_id}_{n} 1 {start:.3f} {end - start:.3f} {word}" for word, start, end in utt.words]
    return ctm, seconds, placements


def _run(jobs: list[tuple], workers: int, progress: bool) -> list[tuple]:
    # fork is quick and safe here: children set one torch thread and make their own espeak before any work
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    plans = [job[0] for job in jobs]
    results = []
    with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker) as pool, \
            tqdm(total=len(plans) * CAPTIONS_PER_IMAGE, unit="utt", disable=not progress) as bar:
        for result in pool.imap(_make_image, jobs, chunksize=4):
            results.append(result)
            bar.update(CAPTIONS_PER_IMAGE)
    return results


def _write_text(path: Path, lines) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _metadata(preset: str, seed: int, plans: list[ImagePlan], results: list[tuple], voices: str) -> dict:
    images = {}
    for plan, (_, _, placements) in zip(plans, results):
        objects = [{**vars(o), **place} for o, place in zip(plan.scene.objects, placements)]
        images[plan.image_id] = {"split": plan.split, "family": plan.family, "variant": plan.variant,
                                 "layout": plan.scene.layout, "objects": objects}
    counts = {s: {"images": n, "utterances": n * CAPTIONS_PER_IMAGE}
              for s, n in zip(SPLITS, CORPUS_PRESETS[preset]) if any(p.split == s for p in plans)}
    return {"generator": "speechclip.synth", "generator_version": GENERATOR_VERSION, "preset": preset, "seed": seed,
            "counts": counts, "sample_rate": tts.SAMPLE_RATE,
            "audio_hours": round(sum(r[1] for r in results) / 3600, 4),
            "speakers": {s.name: {k: v for k, v in vars(s).items() if k != "name"} for s in tts.SPEAKERS},
            "held_out_speakers": {s.name: {k: v for k, v in vars(s).items() if k != "name"}
                                  for s in tts.HELD_OUT_SPEAKERS},
            "voices": voices,
            "attributes": {"shapes": list(scenes.SHAPES), "colours": list(scenes.COLOURS),
                           "sizes": list(scenes.SIZES), "positions": list(scenes.POSITIONS),
                           "arrangements": list(scenes.ARRANGEMENTS)},
            "images": images}


def write_corpus_files(root: Path, preset: str, seed: int, plans: list[ImagePlan], results: list[tuple],
                       voices: str = "train and dev: training speakers; test: held-out speakers") -> None:
    """The text files of the layout (split files for the splits `plans` has); metadata.json goes last."""
    _write_text(root / "Flickr8k.token.txt",
                (f"{p.image_id}.jpg#{n}\t{c}" for p in plans for n, c in enumerate(p.captions)))
    for split in sorted({p.split for p in plans}):
        _write_text(root / f"Flickr_8k.{split}Images.txt", (f"{p.image_id}.jpg" for p in plans if p.split == split))
    _write_text(root / "flickr_audio" / "wav2spk.txt",
                (f"{p.image_id}_{n}.wav {s}" for p in plans for n, s in enumerate(p.speakers)))
    _write_text(root / "flickr_8k.ctm", (line for ctm, _, _ in results for line in ctm))
    meta = json.dumps(_metadata(preset, seed, plans, results, voices), indent=1, sort_keys=True)
    (root / "metadata.json").write_text(meta + "\n", encoding="utf-8")


def _config_of(root: Path) -> dict | None:
    path = root / "metadata.json"
    if not path.exists():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    return {k: meta.get(k) for k in ("preset", "seed", "generator_version")}


def _prepare(root: Path, config: dict, force: bool) -> bool:
    """True when `root` already holds this exact corpus; otherwise leave it empty of our outputs."""
    found = _config_of(root)
    if found == config:
        return True
    ours = found is not None or (root / _IN_PROGRESS).exists()
    outdated = found is not None and {k: v for k, v in found.items() if k != "generator_version"} == \
        {k: v for k, v in config.items() if k != "generator_version"}
    if outdated:  # the same corpus from an older generator: ours to replace, no choice of the user's is lost
        print(f"{root}: replacing the synthetic corpus of generator version {found['generator_version']} "
              f"with version {config['generator_version']}")
    if found is not None and not (force or outdated):
        raise FileExistsError(f"{root} holds a synthetic corpus made with {found}, not {config}; "
                              "pass force=True (--force) to replace it")
    if not ours and any((root / name).exists() for name in _OUTPUTS):
        # never delete a folder we did not write, such as the real Flickr8k
        raise FileExistsError(f"{root} already has Flickr8k-layout files but is not a synthetic corpus")
    (root / _IN_PROGRESS).write_text(json.dumps(config) + "\n")  # an interrupted clean-up stays ours to redo
    for name in _OUTPUTS:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return False


def _folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


@contextlib.contextmanager
def _locked(root: Path):
    # a notebook and a test may ask for the same corpus at once: the second waits, then finds it complete
    with open(root / ".synthetic.lock", "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def make_corpus(out_dir, preset: str = "cpu", seed: int = 0, workers: int | None = None, force: bool = False,
                progress: bool = True) -> Path:
    """Generate (or find complete) the synthetic corpus for `preset` and `seed` under `out_dir`."""
    root = Path(out_dir)
    if preset not in CORPUS_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(CORPUS_PRESETS)}")
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        return _make_locked(root, preset, seed, workers, force, progress)


def _make_locked(root: Path, preset: str, seed: int, workers: int | None, force: bool, progress: bool) -> Path:
    config = {"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION}
    if _prepare(root, config, force):
        print(f"corpus already complete: {root} ({preset}, seed {seed})")
        return root
    seen_root = root / SEEN_VOICES
    for folder in (root, seen_root):
        (folder / "Images").mkdir(parents=True)
        (folder / "flickr_audio" / "wavs").mkdir(parents=True)
    started = time.perf_counter()
    plans = plan_corpus(preset, seed)
    seen_plans = [dataclasses.replace(p, speakers=p.seen_speakers) for p in plans if p.split == "test"]
    jobs = [(p, seed, str(root)) for p in plans] + [(p, seed, str(seen_root)) for p in seen_plans]
    results = _run(jobs, workers or os.cpu_count() or 1, progress)
    write_corpus_files(seen_root, preset, seed, seen_plans, results[len(plans):],
                       voices="test split spoken by training speakers")
    write_corpus_files(root, preset, seed, plans, results[:len(plans)])
    (root / _IN_PROGRESS).unlink()
    elapsed, n_utts = time.perf_counter() - started, len(jobs) * CAPTIONS_PER_IMAGE
    print(f"wrote {n_utts} utterances ({len(plans)} images, {len(seen_plans)} test images again in training "
          f"voices under {SEEN_VOICES}/) to {root} in {elapsed:.1f} s: "
          f"{n_utts / elapsed:.1f} utterances/s, {_folder_bytes(root) / 1e6:.1f} MB")
    return root


def has_corpus(root) -> bool:
    """`root` holds a Flickr8k-layout corpus to read: its caption file, and no half-written synthetic one."""
    root = Path(root)
    return (root / "Flickr8k.token.txt").is_file() and not (root / _IN_PROGRESS).exists()


def synthetic_metadata(root) -> dict | None:
    """metadata.json of a complete synthetic corpus (preset, seed, scenes, voices); None for any other corpus."""
    path = Path(root) / "metadata.json"
    if not has_corpus(root) or not path.is_file():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    return meta if meta.get("generator") == "speechclip.synth" else None


def ensure_corpus(preset: str, root=None) -> Path:
    """The corpus in `root`, whatever made it; where `root` holds none, the seed-0 synthetic corpus of `preset`.

    Real Flickr8k, your own recordings in the layout, a synthetic corpus of any preset or seed: each is read as it
    is and never touched. Default root <repo>/data/synthetic_<preset>. make_corpus is the strict one: it wants
    exactly its preset and seed and replaces another synthetic corpus only with force=True.
    """
    root = Path(root if root is not None else REPO_ROOT / "data" / f"synthetic_{preset}")
    if has_corpus(root):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        if has_corpus(root):  # another process finished it while this one waited
            return root
        return _make_locked(root, preset, 0, None, False, True)

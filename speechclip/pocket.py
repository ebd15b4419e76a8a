"""Training-once, loading-forever glue for the pocket-size HuBERT and CLIP: finding the corpus, keying the cache.

Cache: ``artifacts/pocket/<kind>-<key>/`` with key = hash(pocket config, corpus fingerprint); introduced in
notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two processes training one backbone then both train it
    fcntl = None

from speechclip.corpora import SPLITS
from speechclip.memory import release_freed_memory
from speechclip.cpu import reclaim_threads, reclaim_threads_after  # noqa: F401  (notebook 01 calls them here)

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_VERSION = {"hubert": 1, "clip": 1}  # bump when a training recipe changes, so stale caches are not reused

__all__ = ["ensure_pocket_hubert", "ensure_pocket_clip", "pocket_dir", "corpus_fingerprint", "resolve_corpus",
           "train_in_background", "BackgroundTraining", "reclaim_threads_after", "reclaim_threads"]


def resolve_corpus(corpus_root=None) -> Path:
    """Corpus folder: the given path (relative to the CWD, else to the repo root), default Config.data.root."""
    if corpus_root is None:
        from speechclip.config import DataConfig
        corpus_root = DataConfig().root
    root = Path(corpus_root)
    if not root.is_absolute() and not root.exists() and (REPO_ROOT / root).exists():
        root = REPO_ROOT / root
    if not (root / "Flickr8k.token.txt").is_file():
        raise FileNotFoundError(f"No Flickr8k-layout corpus at {root} (Flickr8k.token.txt missing); "
                                f"make one with data_scripts/make_synthetic_corpus.py or point data.root at one.")
    return root.resolve()


def corpus_fingerprint(root) -> str:
    """Hash of metadata.json (synthetic corpora) or of the caption file and wav names (real ones)."""
    root = Path(root)
    h = hashlib.sha1()
    if (root / "metadata.json").is_file():
        h.update((root / "metadata.json").read_bytes())
    else:
        h.update((root / "Flickr8k.token.txt").read_bytes())
        for split in SPLITS:
            f = root / f"Flickr_8k.{split}Images.txt"
            h.update(f.read_bytes() if f.is_file() else b"")
        wavs = root / "flickr_audio" / "wavs"
        h.update("\n".join(sorted(os.listdir(wavs)) if wavs.is_dir() else []).encode())
    return h.hexdigest()[:12]


def pocket_dir(kind: str, cfg, corpus_root, artifacts_dir=None) -> Path:
    """artifacts/pocket/<kind>-<key>: key = hash of the pocket config, the recipe version and the corpus."""
    root = resolve_corpus(corpus_root)
    payload = json.dumps({"cfg": dataclasses.asdict(cfg), "corpus": corpus_fingerprint(root),
                          "recipe": RECIPE_VERSION[kind]}, sort_keys=True)
    key = hashlib.sha1(payload.encode()).hexdigest()[:12]
    base = Path(artifacts_dir) if artifacts_dir is not None else REPO_ROOT / "artifacts"
    return base / "pocket" / f"{kind}-{key}"


@contextlib.contextmanager
def _training_lock(out: Path):
    """Hold an exclusive lock next to the cache folder: a second process that wants the same backbone waits for the
    first to finish training it (then finds it cached) instead of training it twice. Released when the holder
    exits, even by a crash."""
    if fcntl is None:
        yield
        return
    with open(out.parent / f".{out.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure(kind: str, train_fn, cfg, corpus_root, artifacts_dir) -> Path:
    """Return the cached folder, training into a temporary sibling first so a crash never leaves half a cache."""
    out = pocket_dir(kind, cfg, corpus_root, artifacts_dir)
    if (out / "training.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _training_lock(out):
        if (out / "training.json").is_file():  # trained by another process while this one waited
            return out
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            train_fn(resolve_corpus(corpus_root), cfg, tmp)
            if not (out / "training.json").is_file():
                shutil.rmtree(out, ignore_errors=True)
                tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
                tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            release_freed_memory()  # the training's buffers, so the rest of a notebook starts from what it holds
    return out


def ensure_pocket_hubert(cfg=None, corpus_root=None, artifacts_dir=None) -> Path:
    """Folder of the pocket HuBERT for this config and corpus, trained on first use (save_pretrained format)."""
    from speechclip.config import PocketHubertConfig
    from speechclip.pocket_hubert import train_pocket_hubert
    return _ensure("hubert", train_pocket_hubert, cfg or PocketHubertConfig(), corpus_root, artifacts_dir)


def ensure_pocket_clip(cfg=None, corpus_root=None, artifacts_dir=None) -> Path:
    """Folder of the pocket CLIP for this config and corpus, trained on first use (open_clip local-dir format)."""
    from speechclip.config import PocketClipConfig
    from speechclip.pocket_clip import train_pocket_clip
    return _ensure("clip", train_pocket_clip, cfg or PocketClipConfig(), corpus_root, artifacts_dir)


_CONFIGS = {"hubert": "PocketHubertConfig", "clip": "PocketClipConfig"}


def _config_from_json(kind: str, text: str):
    from speechclip import config

    cls = getattr(config, _CONFIGS[kind])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = json.loads(text)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # JSON lists were tuples


class BackgroundTraining:
    """A pocket backbone training in another process (`train_in_background`); `wait()` returns its cache folder."""

    def __init__(self, kind: str, out: Path, proc: subprocess.Popen | None, log: Path | None):
        self.kind, self.out, self.proc, self.log = kind, out, proc, log

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self) -> Path:
        """Block until the training ends; raise with the end of its log when it failed."""
        if self.proc is not None and self.proc.wait() != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log and self.log.is_file() else ""
            raise RuntimeError(f"training the pocket {self.kind} in the background failed (exit {self.proc.returncode})"
                               f"; its log is {self.log}:\n{tail}")
        if not (self.out / "training.json").is_file():
            raise RuntimeError(f"the background training of the pocket {self.kind} ended without a cache at "
                               f"{self.out}; see {self.log}")
        return self.out


def train_in_background(kind: str, cfg, corpus_root=None, artifacts_dir=None, threads: int = 1) -> BackgroundTraining:
    """Start training a pocket backbone ("hubert" or "clip") in a separate process with `threads` torch threads,
    unless it is cached already; the caller goes on (e.g. training the other backbone) and calls `.wait()`.

    On a 2-core CPU neither pocket backbone's training doubles its speed with a second thread (the pocket HuBERT
    1.4x, the pocket CLIP 1.6x; benchmarks/README.md), so training the two side by side with one thread each ends
    sooner than one after the other with two. The result is the same cache folder `ensure_pocket_*` would write,
    and a caller that asks for it before it is done waits for it (a lock), instead of training it again.
    """
    out = pocket_dir(kind, cfg, corpus_root, artifacts_dir)
    if (out / "training.json").is_file():
        return BackgroundTraining(kind, out, None, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f".{out.name}.log"
    cmd = [sys.executable, "-m", "speechclip.pocket", kind, "--config", json.dumps(dataclasses.asdict(cfg)),
           "--corpus", str(resolve_corpus(corpus_root)), "--threads", str(threads),
           "--artifacts", str(Path(artifacts_dir).resolve() if artifacts_dir is not None else REPO_ROOT / "artifacts")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    return BackgroundTraining(kind, out, proc, log)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train one pocket backbone into its cache folder (what "
                                            "train_in_background runs).")
    p.add_argument("kind", choices=sorted(_CONFIGS))
    p.add_argument("--config", required=True, help="the pocket config as JSON (dataclasses.asdict)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = _config_from_json(args.kind, args.config)
    ensure = ensure_pocket_hubert if args.kind == "hubert" else ensure_pocket_clip
    print(ensure(cfg, args.corpus, args.artifacts), flush=True)


if __name__ == "__main__":
    main()

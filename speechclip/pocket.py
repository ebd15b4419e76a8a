"""Training-once, loading-forever glue for the pocket-size HuBERT and CLIP: finding the corpus, keying the cache.

Cache: ``artifacts/pocket/<kind>-<key>/`` with key = hash(pocket config, corpus fingerprint); introduced in
notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from speechclip.corpora import SPLITS

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_VERSION = {"hubert": 1, "clip": 1}  # bump when a training recipe changes, so stale caches are not reused

__all__ = ["ensure_pocket_hubert", "ensure_pocket_clip", "pocket_dir", "corpus_fingerprint", "resolve_corpus"]


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


def _ensure(kind: str, train_fn, cfg, corpus_root, artifacts_dir) -> Path:
    """Return the cached folder, training into a temporary sibling first so a crash never leaves half a cache."""
    out = pocket_dir(kind, cfg, corpus_root, artifacts_dir)
    if (out / "training.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        train_fn(resolve_corpus(corpus_root), cfg, tmp)
        if not (out / "training.json").is_file():  # another process may have finished first
            shutil.rmtree(out, ignore_errors=True)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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

"""Frozen-encoder outputs computed once per corpus split and reused, so CPU training runs only what trains.

The speech encoder and CLIP are frozen (§1.5), so their outputs for a fixed utterance never change: all L+1
hidden states are stored as float16 in one file per split, and each image's CLIP embedding once.
The training-time 6.4 s crop (§1.2) becomes a crop of 6.4 s worth of frames (320 at HuBERT's 50 frames/s, 80 when
the encoder pools 4 frames); frames near the crop edge saw the full context, a documented difference from
cropping the waveform. Each store records the encoder's frame rate. Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

FRAMES_PER_SECOND = 50  # HuBERT: 320 samples per frame at 16 kHz (stores written before frame rates were recorded)


def _stamp(path) -> str:
    """"size:mtime_ns" of a file, "-" when there is none."""
    try:
        st = Path(path).stat()
    except (OSError, TypeError):
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def split_fingerprint(dataset, kind: str = "speech") -> str:
    """Hash of the split's utterances with the size and modification time of each wav ("speech") or image ("images").

    Keyed by (size, mtime) rather than content: hashing the 40k wavs of Flickr8k (about 5 GB) would cost a minute
    per run, while every ordinary way of replacing a file (a copy, a re-extraction, a new synthetic corpus) gives
    it a new mtime, so a replaced wav of the same size is noticed. A replacement that keeps both size and mtime
    (cp -p of a same-size file) is not: delete the cache folder by hand after such a copy.
    """
    h = hashlib.sha1(kind.encode())
    for utt in dataset.utterances:
        key = f"{utt.uid}|{utt.image_id}|{_stamp(utt.wav_path)}" if kind == "speech" else \
            f"{utt.image_id}|{utt.image_path}|{_stamp(utt.image_path)}"
        h.update(key.encode())
    return h.hexdigest()[:12]


class FeatureStore:
    """Hidden states (total_frames, L+1, D_a) of one split on disk, with its utterance index.

    Each utterance is read with one positioned read (os.preadv) when asked for. A memory map would serve the same
    bytes, but every page it touched would count in the process's resident memory (1.7 GB of the 3.4 GB peak of
    notebook 10's training on the `cpu` corpus, benchmarks/README.md); read this way the pages stay in the kernel's
    page cache, which any other program can reclaim, and the process holds only the batch it is using.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.index = json.loads((self.directory / "index.json").read_text())
        self.path = self.directory / "hidden.f16"
        self.shape = (self.index["total_frames"], self.index["num_states"], self.index["dim"])
        self.frame_bytes = self.shape[1] * self.shape[2] * 2  # float16
        expected, actual = self.shape[0] * self.frame_bytes, self.path.stat().st_size
        if actual != expected:
            raise ValueError(f"{self.path}: {actual} bytes where its index.json describes {expected} "
                             f"({self.shape[0]} frames x {self.shape[1]} states x {self.shape[2]} dims, float16): "
                             f"the cache was cut short or overwritten. Delete {self.directory.parent} and it is "
                             "computed again on next use.")
        self.offsets = np.asarray(self.index["offsets"])
        self.lengths = np.asarray(self.index["lengths"])
        self.frame_rate = float(self.index.get("frame_rate", FRAMES_PER_SECOND))
        self._fd, self._pid = None, None

    def __len__(self) -> int:
        return len(self.lengths)

    def _file(self) -> int:
        if self._pid != os.getpid():  # one descriptor per process: DataLoader workers do not share the parent's
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getitem__(self, i: int) -> torch.Tensor:
        """(T, L+1, D_a) float32 hidden states of utterance i."""
        n = int(self.lengths[i]) * self.frame_bytes
        start = int(self.offsets[i]) * self.frame_bytes
        if n == 0:
            return torch.zeros(0, *self.shape[1:])
        raw = bytearray(n)  # writable, so torch reads it without a copy
        if hasattr(os, "preadv"):
            got = os.preadv(self._file(), [raw], start)
        else:  # Windows has no positioned read
            with open(self.path, "rb") as fh:
                fh.seek(start)
                got = fh.readinto(raw)
        if got != n:
            raise ValueError(f"{self.path}: utterance {i} ends past the end of the file; delete "
                             f"{self.directory.parent} and it is computed again on next use.")
        # torch widens float16 with the CPU's conversion instructions: 3x faster than numpy's astype, same values
        return torch.frombuffer(raw, dtype=torch.float16).view(-1, *self.shape[1:]).float()

    def __getstate__(self) -> dict:  # picklable for spawned workers: the descriptor is reopened there
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)

    @staticmethod
    def exists(directory: str | Path) -> bool:
        return (Path(directory) / "index.json").exists()


@torch.no_grad()
def compute_features(speech_encoder, dataset, directory: str | Path, batch_size: int = 8) -> FeatureStore:
    """Run the frozen encoder over every utterance (longest first, so the memory peak comes early).

    Batches of 8 ran the pocket HuBERT 8-17% faster than batches of 16 on the 2-core CPU, and 32 was slower still
    (`benchmarks/feature_batch.py`): larger padded batches leave the CPU caches. On a GPU pass a larger batch_size.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-np.asarray(dataset.lengths()), kind="stable")
    offsets, lengths, total, shape = [0] * len(dataset), [0] * len(dataset), 0, None
    device = next(speech_encoder.parameters()).device
    with open(directory / "hidden.f16", "wb") as fh:  # appended in processing order; offsets map it back
        for start in tqdm(range(0, len(order), batch_size), desc=f"features {directory.parent.name}", leave=False):
            idx = order[start: start + batch_size].tolist()
            wavs = [dataset[i]["wav"] for i in idx]
            lens = torch.tensor([len(w) for w in wavs])
            padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
            hidden, feat_lens = speech_encoder(padded.to(device), lens.to(device))  # (L+1, B, T, D_a)
            for b, i in enumerate(idx):
                utt = hidden[:, b, : int(feat_lens[b])].transpose(0, 1).half().cpu().numpy()  # (T, L+1, D_a)
                fh.write(utt.tobytes())
                offsets[i], lengths[i], shape = total, utt.shape[0], utt.shape[1:]
                total += utt.shape[0]
    index = {"total_frames": total, "num_states": int(shape[0]), "dim": int(shape[1]),
             "frame_rate": float(getattr(speech_encoder, "frame_rate", FRAMES_PER_SECOND)),
             "offsets": offsets, "lengths": lengths, "uids": [u.uid for u in dataset.utterances]}
    (directory / "index.json").write_text(json.dumps(index))  # written last: marks the cache complete
    return FeatureStore(directory)


def _load_image(clip, utt, problems: dict[str, str]):
    """One preprocessed image, or None with its reason in problems (missing, empty, corrupt image)."""
    from PIL import Image

    from speechclip.file_checks import image_problem

    try:
        with Image.open(utt.image_path) as im:
            return clip.preprocess(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        problems[str(utt.image_path)] = image_problem(utt)
        return None


@torch.no_grad()
def compute_image_embeds(clip, dataset, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """CLIP embeddings of every readable distinct image -> (embeds (N, D), image_ids (N,), {bad image: reason})."""
    first: dict[int, object] = {}
    for utt in dataset.utterances:
        first.setdefault(utt.image_id, utt)
    utts, device = list(first.values()), next(clip.parameters()).device
    ids, chunks, problems = [], [], {}
    for start in tqdm(range(0, len(utts), batch_size), desc="image embeddings", leave=False):
        batch = [(u.image_id, _load_image(clip, u, problems)) for u in utts[start: start + batch_size]]
        batch = [(i, image) for i, image in batch if image is not None]
        if batch:
            ids += [i for i, _ in batch]
            chunks.append(clip.encode_image(torch.stack([im for _, im in batch]).to(device)).float().cpu())
    embeds = torch.cat(chunks) if chunks else torch.empty(0, clip.embed_dim)
    return embeds, torch.tensor(ids, dtype=torch.long), problems


def cache_dir_for(cache_root: str | Path, encoder_key: str, dataset, kind: str = "speech") -> Path:
    return Path(cache_root) / f"{encoder_key}-{split_fingerprint(dataset, kind)}"


def cached_features(speech_encoder, dataset, cache_root, encoder_key: str, batch_size: int = 8) -> FeatureStore:
    """The split's FeatureStore, computed on first use and reused after."""
    directory = cache_dir_for(cache_root, encoder_key, dataset) / "speech"
    if FeatureStore.exists(directory):
        return FeatureStore(directory)
    return compute_features(speech_encoder, dataset, directory, batch_size)


def cached_image_embeds(clip, dataset, cache_root, clip_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's image embeddings, computed on first use; unreadable images are kept in the cache with their
    reason and raised, or skipped and counted, by the dataset's on_error on every use (so call this first)."""
    path = cache_dir_for(cache_root, clip_key, dataset, "images") / "images.pt"
    if path.exists():
        saved = torch.load(path)
    else:
        embeds, ids, problems = compute_image_embeds(clip, dataset)
        saved = {"embeds": embeds, "image_ids": ids, "problems": problems}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".images.pt.partial")
        torch.save(saved, tmp)
        tmp.replace(path)  # never a cut-short cache
    dataset.drop_images(saved["problems"])
    return saved["embeds"], saved["image_ids"]


class FeatureDataset(torch.utils.data.Dataset):
    """Utterances as cached hidden states paired with cached image embeddings; random crop in training."""

    def __init__(self, store: FeatureStore, dataset, image_embeds, image_ids, train: bool = False,
                 max_seconds: float = 6.4, seed: int = 0):
        self.store, self.utterances, self.train, self.seed = store, dataset.utterances, train, seed
        self.name = f"features of {getattr(dataset, 'name', 'a split')}"  # errors name the split
        self.row_of = {int(i): r for r, i in enumerate(image_ids.tolist())}
        self.image_embeds = image_embeds
        self.max_frames = int(round(max_seconds * store.frame_rate))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.store)

    def lengths(self) -> list[int]:
        return self.store.lengths.tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        hidden = self.store[i]  # (T, L+1, D_a)
        if self.train and len(hidden) > self.max_frames:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) % (2**31))
            start = int(torch.randint(0, len(hidden) - self.max_frames, (1,), generator=g))
            hidden = hidden[start: start + self.max_frames]
        utt = self.utterances[i]
        return {"hidden": hidden, "image_embed": self.image_embeds[self.row_of[utt.image_id]],
                "image_id": utt.image_id, "text": utt.caption, "uid": utt.uid}


def collate_features(batch: list[dict]) -> dict:
    """Pad hidden states -> hidden_states (L+1, B, T, D_a), feat_lens (B,), image_embeds (B, D), image_ids (B,)."""
    hidden = [b["hidden"] for b in batch]
    num_states, dim = hidden[0].shape[1:]
    padded = hidden[0].new_zeros(num_states, len(hidden), max(len(h) for h in hidden), dim)
    for j, h in enumerate(hidden):  # written in place: one pass over the batch instead of a pad and a permute
        padded[:, j, : len(h)] = h.transpose(0, 1)
    return {"hidden_states": padded,
            "feat_lens": torch.tensor([len(h) for h in hidden]),
            "image_embeds": torch.stack([b["image_embed"] for b in batch]),
            "image_ids": torch.tensor([b["image_id"] for b in batch]),
            "texts": [b["text"] for b in batch], "uids": [b["uid"] for b in batch]}

"""Flickr8k and SpokenCOCO speech-image datasets, their collate function and a length-bucketing batch sampler.

Bad corpus files raise a CorpusError that names the file and the fix, or, with on_error="skip", are left out,
counted and reported (never silently). Introduced in notebooks/00_setup_and_data.ipynb (§1.2, §1.4, §6).
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from speechclip.alignments import Alignment, alignment_overrun, crop_alignment, read_ctm
from speechclip.file_checks import audio_problem, cheap_problem, decode_image_problem, wav_shortfall

from speechclip.corpora import (  # noqa: F401  (re-exported: the data API)
    SEEN_VOICES, SPLITS, CorpusError, Utterance, corpus_error, read_flickr_split, read_spokencoco_split)


class SpeechImageDataset(torch.utils.data.Dataset):
    """Spoken captions with their images; items are dicts of wav, image, text, image_id, uid, alignment (§1.2, §1.4).

    Audio: mono float32 at sample_rate (other rates are resampled and listed in .resampled unless resample=False),
    optionally normalised per utterance, and randomly cropped to max_audio_seconds only when train=True.
    """

    def __init__(self, utterances: list[Utterance], name: str, *, image_transform=None, train: bool = False,
                 sample_rate: int = 16000, max_audio_seconds: float = 6.4, normalize_waveform: bool = False,
                 on_error: str = "raise", load_images: bool = True, load_audio: bool = True, seed: int = 0,
                 resample: bool = True, alignments: dict[str, Alignment] | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.name, self.image_transform, self.train, self.seed = name, image_transform, train, seed
        self.sample_rate, self.max_samples = sample_rate, round(max_audio_seconds * sample_rate)
        self.normalize_waveform, self.resample, self.on_error = normalize_waveform, resample, on_error
        self.load_images, self.load_audio, self.alignments = load_images, load_audio, alignments
        self.epoch = 0
        self.utterances, self._total = list(utterances), len(utterances)
        self.skipped: list[tuple[str, str]] = []  # (path, reason) for every utterance left out
        self.resampled: set[str] = set()  # wavs found at another rate (resampled on load)
        self._headers: dict[Path, tuple[int, int]] = {}  # wav -> (frames, sample_rate), filled by header reads
        self._drop([(u, cheap_problem(u, load_audio, load_images)) for u in self.utterances])
        if on_error == "skip":
            self.validate(report=False)
        if self.skipped:
            print(self.summary())
        if self.resampled:  # known here only after validate(); lengths() and loading keep counting
            print(f"{name}: {len(self.resampled)} wavs are not at {sample_rate} Hz and are resampled on load")

    def _drop(self, found: list[tuple[Utterance, str | None]]) -> None:
        bad = [(u, reason) for u, reason in found if reason]
        if bad and self.on_error == "raise":
            raise corpus_error(_bad_path(*bad[0]), bad[0][1], more=len(bad) - 1)
        self.skipped += [(_bad_path(u, reason), reason) for u, reason in bad]
        dropped = {id(u) for u, _ in bad}
        self.utterances = [u for u in self.utterances if id(u) not in dropped]
        if bad and not self.utterances:
            raise CorpusError(f"{self.name}: every one of its {self._total} utterances was skipped "
                              f"({self.summary()}); check the corpus root and re-run its preparation.")

    def summary(self) -> str:
        """One line such as "skipped 3 of 120 utterances: 2 missing audio, 1 corrupt image"."""
        counts = Counter(reason for _, reason in self.skipped).most_common()
        detail = ", ".join(f"{n} {reason}" for reason, n in counts)
        head = f"{self.name}: skipped {len(self.skipped)} of {self._total} utterances"
        return f"{head}: {detail}" if detail else head

    def validate(self, report: bool = True) -> list[tuple[str, str]]:
        """Read every audio header and decode every image once; bad files raise, or are skipped with on_error="skip"."""
        rate, image_problems, found = (None if self.resample else self.sample_rate), {}, []
        for u in self.utterances:
            reason = None
            if self.load_audio:
                reason, header = audio_problem(u.wav_path, rate)
                if header:
                    self._note_header(u, header)
                    reason = self._alignment_problem(u, header[0] / header[1])
            if reason is None and self.load_images:
                if u.image_path not in image_problems:
                    image_problems[u.image_path] = decode_image_problem(u.image_path)
                reason = image_problems[u.image_path]
            found.append((u, reason))
        before = len(self.skipped)
        self._drop(found)
        if report and len(self.skipped) > before:
            print(self.summary())
        return self.skipped[before:]

    def drop_images(self, problems: dict[str, str]) -> list[tuple[str, str]]:
        """Raise for, or skip and count, the utterances of images found unreadable by another reader (the
        pipeline embeds images without loading them here): problems maps image path -> reason."""
        before = len(self.skipped)
        self._drop([(u, problems.get(str(u.image_path))) for u in self.utterances])
        if len(self.skipped) > before:
            print(self.summary())
        return self.skipped[before:]

    def _alignment_problem(self, u: Utterance, seconds: float) -> str | None:
        """An alignment that ends past its audio was made for another recording; u.source names the CTM line."""
        where = alignment_overrun(self.alignments, u.uid, seconds) if self.alignments is not None else None
        if where:
            u.source = where
        return "alignment past the audio" if where else None

    def _note_header(self, u: Utterance, header: tuple[int, int]) -> None:
        self._headers[u.wav_path] = header
        if header[1] != self.sample_rate:
            self.resampled.add(str(u.wav_path))

    def lengths(self) -> np.ndarray:
        """Audio lengths in samples at sample_rate from the wav headers (no decoding), capped at the crop if train."""
        out = []
        for u in self.utterances:
            if u.wav_path not in self._headers:
                reason, header = audio_problem(u.wav_path, None)
                if reason:
                    raise corpus_error(u.wav_path, reason)
                self._note_header(u, header)
            frames, rate = self._headers[u.wav_path]
            n = math.ceil(frames * self.sample_rate / rate)  # the length torchaudio's resample returns
            out.append(min(n, self.max_samples) if self.train else n)
        return np.array(out, dtype=np.int64)

    def image_ids(self) -> list[int]:
        return [u.image_id for u in self.utterances]

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops: the offset is a function of (seed, epoch, index) only."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        u = self.utterances[index]
        wav = self._load_wav(u) if self.load_audio else None
        alignment = self.alignments.get(u.uid) if self.alignments is not None else None
        if wav is not None and self.train and wav.numel() > self.max_samples:
            # seeded per (seed, epoch, index) so crops are reproducible whatever the worker or the order
            rng = np.random.default_rng((self.seed, self.epoch, index))
            offset = int(rng.integers(0, wav.numel() - self.max_samples + 1))
            wav = wav[offset:offset + self.max_samples]
            alignment = crop_alignment(alignment, offset / self.sample_rate, self.max_samples / self.sample_rate)
        image = self._load_image(u) if self.load_images else None
        return {"wav": wav, "image": image, "text": u.caption, "image_id": u.image_id, "uid": u.uid,
                "alignment": alignment}

    def _load_wav(self, u: Utterance) -> torch.Tensor:
        try:
            data, rate = sf.read(str(u.wav_path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError):
            raise corpus_error(u.wav_path, "corrupt audio" if u.wav_path.is_file() else "missing audio") from None
        if data.shape[0] == 0:
            raise corpus_error(u.wav_path, "empty audio")
        if wav_shortfall(u.wav_path):
            raise corpus_error(u.wav_path, "truncated audio")
        if not np.isfinite(data).all():
            raise corpus_error(u.wav_path, "corrupt audio", " (NaN/inf samples)")
        if self._alignment_problem(u, data.shape[0] / rate):
            raise corpus_error(u.source, "alignment past the audio")
        wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # mono: average the channels
        if rate != self.sample_rate:
            if not self.resample:
                raise corpus_error(u.wav_path, "wrong sample rate", f" ({rate} Hz, expected {self.sample_rate} Hz)")
            import torchaudio.functional  # imported late: torchaudio is slow to import and rarely needed

            wav = torchaudio.functional.resample(wav, rate, self.sample_rate)
            self.resampled.add(str(u.wav_path))
        if self.normalize_waveform:  # whole-utterance zero mean, unit variance (SpeechCLIP+ base, §1.2)
            wav = torch.nn.functional.layer_norm(wav, wav.shape)
        return wav

    def _load_image(self, u: Utterance):
        try:
            with Image.open(u.image_path) as im:
                image = im.convert("RGB")
        except FileNotFoundError:
            raise corpus_error(u.image_path, "missing image") from None
        except (OSError, ValueError):
            raise corpus_error(u.image_path, "corrupt image") from None
        return self.image_transform(image) if self.image_transform is not None else image


def _bad_path(u: Utterance, reason: str) -> str:
    if u.source:  # an index or alignment line
        return u.source
    if reason.endswith("image"):
        return str(u.image_path)
    return str(u.wav_path) if u.wav_path else f"caption {u.uid!r} of {u.image_path} (no wav listed)"


def read_split(root, split: str) -> list[dict]:
    """One dict per captioned utterance of a Flickr8k split (image_id, caption, image, wav or None, utt_id).

    A plain view of read_flickr_split for the pocket trainers and probes: utterances with index problems are left
    out, and a wav that is not on disk is None.
    """
    return [dict(image_id=u.image_name, caption=u.caption, image=u.image_path, utt_id=u.uid,
                 wav=u.wav_path if u.wav_path is not None and u.wav_path.is_file() else None)
            for u in read_flickr_split(root, split) if u.caption is not None and u.problem is None]


class FlickrDataset(SpeechImageDataset):
    """Flickr8k Audio Captions, one item per spoken caption; word alignments from <root>/flickr_8k.ctm if present."""

    def __init__(self, root: str | Path, split: str, *, ctm_path: str | Path | None = None, **options):
        root = Path(root)
        ctm = Path(ctm_path) if ctm_path else root / "flickr_8k.ctm"
        alignments = read_ctm(ctm) if ctm_path or ctm.is_file() else None
        super().__init__(read_flickr_split(root, split), f"FlickrDataset({root}, {split})",
                         alignments=alignments, **options)


class SpokenCOCODataset(SpeechImageDataset):
    """SpokenCOCO on the Karpathy split, one item per spoken caption (§6.2); alignments only from ctm_path."""

    def __init__(self, root: str | Path, split: str, *, ctm_path: str | Path | None = None, **options):
        alignments = read_ctm(ctm_path) if ctm_path else None
        super().__init__(read_spokencoco_split(root, split), f"SpokenCOCODataset({root}, {split})",
                         alignments=alignments, **options)


def build_dataset(data_cfg, split: str, image_transform=None, train: bool = False, **options) -> SpeechImageDataset:
    """The dataset DataConfig.format names, with the config's audio and error-handling settings."""
    classes = {"flickr8k": FlickrDataset, "spokencoco": SpokenCOCODataset}
    if data_cfg.format not in classes:
        raise ValueError(f"unknown data format {data_cfg.format!r}; choose one of {sorted(classes)}")
    return classes[data_cfg.format](
        data_cfg.root, split, image_transform=image_transform, train=train, sample_rate=data_cfg.sample_rate,
        max_audio_seconds=data_cfg.max_audio_seconds, normalize_waveform=data_cfg.normalize_waveform,
        on_error=data_cfg.on_error, **options)


def collate(batch: list[dict]) -> dict:
    """Zero-pad waveforms to the longest in the batch: wavs (B, S), wav_lens (B,); images stacked when tensors."""
    wavs, images = [b["wav"] for b in batch], [b["image"] for b in batch]
    out = {"wavs": None, "wav_lens": None, "images": None,
           "image_ids": torch.tensor([b["image_id"] for b in batch], dtype=torch.long),
           "texts": [b["text"] for b in batch], "uids": [b["uid"] for b in batch],
           "alignments": [b["alignment"] for b in batch]}
    if all(w is not None for w in wavs):
        out["wav_lens"] = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
        out["wavs"] = torch.zeros(len(batch), int(out["wav_lens"].max()), dtype=wavs[0].dtype)
        for row, w in zip(out["wavs"], wavs):
            row[:w.numel()] = w
    if all(isinstance(im, torch.Tensor) for im in images):
        out["images"] = torch.stack(images)
    elif any(im is not None for im in images):
        out["images"] = images  # PIL images (no transform given): left for the caller's preprocessing
    return out


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar audio lengths (less padding), in shuffled order; each DDP rank gets a disjoint share.

    Shuffle mode draws a random pool of pool_batches * batch_size utterances, sorts the pool by length and cuts it
    into batches, then shuffles the batch order; everything is a function of (seed, epoch). batch_size is per rank.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, pool_batches: int = 50):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.num_replicas, self.rank, self.pool_batches = num_replicas, rank, pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if self.shuffle:
            rng = np.random.default_rng((self.seed, self.epoch))
            order, pool = rng.permutation(n), bs * self.pool_batches
            order = np.concatenate([p[np.argsort(self.lengths[p], kind="stable")]
                                    for p in np.split(order, range(pool, n, pool))] or [order])
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i:i + bs].tolist() for i in range(0, n, bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        batches, r = self._batches(), self.num_replicas
        if self.drop_last:
            batches = batches[:len(batches) - len(batches) % r]  # equal shares, every batch used at most once
        elif batches and len(batches) % r:
            batches += (batches * r)[:r - len(batches) % r]  # pad like DistributedSampler: a few repeats
        return iter(batches[self.rank::r])

    def __len__(self) -> int:
        n, bs, r = len(self.lengths), self.batch_size, self.num_replicas
        batches = n // bs if self.drop_last else math.ceil(n / bs)
        return batches // r if self.drop_last else math.ceil(batches / r)

"""Honest checks that the backbones are useful: CLIP retrieval topline and a layer-wise spoken-word probe.

Introduced in notebooks/01_backbones.ipynb (the pocket backbones must be meaningful before SpeechCLIP is).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from speechclip.alignments import read_ctm
from speechclip.metrics import mutual_retrieval
from speechclip.data import read_split
from speechclip.memory import release_freed_memory

__all__ = ["encode_split", "clip_retrieval", "keyword_captions", "keyword_topline", "word_segments", "word_probe"]

FRAME_RATE = 50  # HuBERT frames per second (320 samples at 16 kHz)


@torch.no_grad()
def encode_split(clip, corpus_root, split: str = "test", batch_size: int = 256) -> dict:
    """CLIP embeddings of a split: image_embeds (N, D), text_embeds (M, D), caption_image (M,), captions."""
    rows = read_split(corpus_root, split)
    image_ids = sorted({r["image_id"] for r in rows})
    where = {k: i for i, k in enumerate(image_ids)}
    paths = {r["image_id"]: r["image"] for r in rows}
    image_embeds = torch.cat([
        clip.encode_image(torch.stack([clip.preprocess(Image.open(paths[k]).convert("RGB"))
                                       for k in image_ids[s:s + batch_size]]))
        for s in range(0, len(image_ids), batch_size)])
    captions = [r["caption"] for r in rows]
    text_embeds = torch.cat([clip.encode_text(captions[s:s + batch_size])
                             for s in range(0, len(captions), batch_size)])
    return {"image_embeds": image_embeds, "text_embeds": text_embeds, "image_ids": image_ids,
            "caption_image": torch.tensor([where[r["image_id"]] for r in rows]), "captions": captions}


def clip_retrieval(clip, corpus_root, split: str = "test") -> dict:
    """CLIP's caption<->image retrieval on a split: the topline any speech model can at best approach."""
    e = encode_split(clip, corpus_root, split)
    # image rows repeated per caption: mutual_retrieval de-duplicates them and counts an image->text hit when any
    # of the image's captions is in the top k (the usual Flickr protocol); keys "text2image_R@1", "image2text_R@1"
    images = e["image_embeds"][e["caption_image"]]
    out = mutual_retrieval(e["text_embeds"], images, e["caption_image"], "text", "image")
    return {**out, "pool": len(e["image_ids"]), "captions": len(e["captions"])}


def keyword_captions(captions: list[str]) -> list[str]:
    """Each caption's content words in spoken order ("a big red circle left of a square" -> "big red circle left
    square"): what a perfect cascaded model's keywords could say at best."""
    from speechclip.evaluation import FUNCTION_WORDS
    return [" ".join(w for w in re.findall(r"[a-z]+", c.lower()) if w not in FUNCTION_WORDS) for c in captions]


def keyword_topline(clip, corpus_root, split: str = "test") -> dict:
    """The cascaded topline: each caption's content words through CLIP's text tower, retrieving images."""
    e = encode_split(clip, corpus_root, split)
    bags = keyword_captions(e["captions"])
    text = torch.cat([clip.encode_text(bags[s:s + 256]) for s in range(0, len(bags), 256)])
    out = mutual_retrieval(text, e["image_embeds"][e["caption_image"]], e["caption_image"], "text", "image")
    return {**out, "pool": len(e["image_ids"]), "example": bags[0]}


def word_segments(alignment, num_frames: int, frame_rate: float = FRAME_RATE) -> list[tuple[int, int, str]]:
    """(word, start_s, end_s) alignments -> (first_frame, end_frame, word) at frame_rate, at least one frame each."""
    out = []
    for word, start, end in alignment:
        a = min(int(round(start * frame_rate)), num_frames - 1)
        b = min(max(a + 1, int(round(end * frame_rate))), num_frames)
        out.append((a, b, word.lower()))
    return out


@torch.no_grad()
def _pooled_words(encoder, rows, ctm, batch_size: int = 16) -> tuple:
    """Word features per layer, mean-pooled and at the word's middle frame, (2, L+1, W, D); MFCC (2, W, 39); words."""
    from speechclip.pocket_hubert import load_wav, mfcc_many
    rows = sorted(rows, key=lambda r: r["wav"].stat().st_size)  # similar lengths per batch: less padding
    per_layer, mfcc, words = [], [], []
    for s in range(0, len(rows), batch_size):
        wavs = [load_wav(r["wav"]) for r in rows[s:s + batch_size]]
        lens = torch.tensor([len(w) for w in wavs])
        hs, feat_lens = encoder(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lens)
        rate = getattr(encoder, "frame_rate", FRAME_RATE)
        for b, (r, m) in enumerate(zip(rows[s:s + batch_size], mfcc_many(wavs))):
            spans = zip(word_segments(ctm[r["utt_id"]], int(feat_lens[b]), rate), word_segments(ctm[r["utt_id"]], len(m)))
            for (a, e, word), (ma, me, _) in spans:
                mid, m_mid = (a + e - 1) // 2, (ma + me - 1) // 2
                per_layer.append(torch.stack([hs[:, b, a:e].mean(1), hs[:, b, mid]]))
                mfcc.append(torch.stack([m[ma:me].mean(0), m[m_mid]]))
                words.append(word)
        del hs, wavs
        release_freed_memory()
    return torch.stack(per_layer, 2).float().numpy(), torch.stack(mfcc, 1).numpy(), words


def _probe_accuracy(x_train, y_train, x_test, y_test, l2: float = 1e-4, iters: int = 100) -> float:
    """Test accuracy of a linear softmax probe on standardised features (full-batch L-BFGS, bounded cost)."""
    classes = {w: i for i, w in enumerate(sorted(set(y_train)))}
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x = torch.as_tensor((x_train - mu) / sd, dtype=torch.float32)
    y = torch.tensor([classes[w] for w in y_train])
    w = torch.zeros(x.shape[1] + 1, len(classes), requires_grad=True)  # zero init: deterministic
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w[:-1] + w[-1], y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (torch.as_tensor((x_test - mu) / sd, dtype=torch.float32) @ w[:-1] + w[-1]).argmax(1)
    target = torch.tensor([classes.get(t, -1) for t in y_test])
    return float((pred == target).float().mean())


def _pick(rows, ctm, n: int, seed: int) -> list:
    rows = [r for r in rows if r["wav"] is not None and r["utt_id"] in ctm]
    return [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))[:n]]


def word_probe(encoder, corpus_root, max_train_utts: int = 1000, max_test_utts: int = 400, min_count: int = 5,
               seed: int = 0, probe_iters: int = 100) -> dict:
    """Linear word-identity probes on CTM word segments, for every hidden state and for MFCCs.

    Two readings of a word: its frames mean-pooled ("mean", easy: even MFCCs do well on clean TTS) and its single
    middle frame ("frame": what a frame knows about the word it sits in, the view SpeechCLIP's attention gets).
    Trained on train-split words, scored on test-split words (words seen >= min_count times in training).
    """
    ctm = read_ctm(Path(corpus_root) / "flickr_8k.ctm")
    train = _pick(read_split(corpus_root, "train"), ctm, max_train_utts, seed)
    test = _pick(read_split(corpus_root, "test"), ctm, max_test_utts, seed)
    h_tr, m_tr, w_tr = _pooled_words(encoder, train, ctm)
    h_te, m_te, w_te = _pooled_words(encoder, test, ctm)
    vocab, counts = np.unique(w_tr, return_counts=True)
    keep_vocab = set(vocab[counts >= min_count])
    tr = np.array([w in keep_vocab for w in w_tr])
    te = np.array([w in keep_vocab for w in w_te])
    y_tr, y_te = np.array(w_tr)[tr], np.array(w_te)[te]
    out = {}
    # The encoder passes above use the caller's threads (on two, 200 utterances took 4.4 s instead of 7.7); the
    # probes are thousands of tiny ops, where extra threads only spin (10x slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fits = [[_probe_accuracy(h_tr[i, l][tr], y_tr, h_te[i, l][te], y_te, iters=probe_iters)
                 for l in range(h_tr.shape[1])] + [_probe_accuracy(m_tr[i][tr], y_tr, m_te[i][te], y_te,
                                                                    iters=probe_iters)] for i in range(2)]
    finally:
        torch.set_num_threads(threads)
    for i, view in enumerate(("mean", "frame")):
        layers, mfcc = fits[i][:-1], fits[i][-1]
        out[view] = {"layer_accuracy": [round(a, 4) for a in layers], "best_layer": int(np.argmax(layers)),
                     "mfcc_accuracy": round(mfcc, 4)}
    majority = float(np.mean(y_te == max(keep_vocab, key=lambda w: (y_tr == w).sum())))
    return {**out, "majority_accuracy": round(majority, 4), "num_words": len(keep_vocab),
            "train_tokens": int(tr.sum()), "test_tokens": int(te.sum())}

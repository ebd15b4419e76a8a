"""Pocket backbones: training on a tiny fixture corpus, cache reuse, loading through the real loaders, probes."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from speechclip import pocket, probes
from speechclip.clip_encoder import load_clip
from speechclip.data import read_split
from speechclip.config import ClipConfig, PocketClipConfig, PocketHubertConfig, SpeechEncoderConfig
from speechclip.speech_encoder import load_speech_encoder

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
SHAPES = ("dog", "ball", "tree")
TONES = {w: 200.0 + 97.0 * i for i, w in enumerate(["a", *COLORS, *SHAPES, "on", "grass"])}


def _image(color, shape, size=32):
    img = np.full((size, size, 3), 240, np.uint8)
    lo, hi = (8, 24) if shape == "ball" else (4, 28) if shape == "tree" else (10, 20)
    img[lo:hi, lo:hi] = COLORS[color]
    return Image.fromarray(img)


def _speak(words, rng):
    """Each word a 0.15-0.25 s tone chord: a stand-in for TTS that still has word identities and alignments."""
    pieces, ctm, t = [], [], 0.0
    for w in words:
        dur = float(rng.uniform(0.15, 0.25))
        x = np.arange(int(dur * 16000)) / 16000
        pieces.append(0.3 * np.sin(2 * np.pi * TONES[w] * x) + 0.1 * np.sin(2 * np.pi * 2.5 * TONES[w] * x))
        ctm.append((t, dur, w))
        t += dur
    return np.concatenate(pieces).astype(np.float32), ctm


def make_corpus(root, n_images=(10, 2, 5), seed=0):
    """A tiny Flickr8k-layout corpus: coloured squares, 5 captions each, tone-word audio with a CTM."""
    rng = np.random.default_rng(seed)
    (root / "Images").mkdir(parents=True)
    (root / "flickr_audio" / "wavs").mkdir(parents=True)
    tokens, ctm_lines, k = [], [], 0
    for split, n in zip(("train", "dev", "test"), n_images):
        names = []
        for _ in range(n):
            color, shape = list(COLORS)[k % 4], SHAPES[k % 3]
            name = f"{1000 + k}_img"
            k += 1
            _image(color, shape).save(root / "Images" / f"{name}.jpg")
            names.append(f"{name}.jpg")
            for c in range(5):
                words = ["a", color, shape] + (["on", "grass"] if c % 2 else [])
                tokens.append(f"{name}.jpg#{c}\t{' '.join(words)} .")
                wav, ctm = _speak(words, rng)
                sf.write(root / "flickr_audio" / "wavs" / f"{name}_{c}.wav", wav, 16000, subtype="PCM_16")
                ctm_lines += [f"{name}_{c} 1 {s:.3f} {d:.3f} {w}" for s, d, w in ctm]
        (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    (root / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    (root / "flickr_8k.ctm").write_text("\n".join(ctm_lines) + "\n")
    (root / "metadata.json").write_text(json.dumps({"preset": "fixture", "seed": seed}))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


TINY_HUBERT = PocketHubertConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                 conv_dim=(16,) * 7, num_clusters=8, steps=3, batch_size=2)
TINY_CLIP = PocketClipConfig(embed_dim=32, image_size=32, patch_size=16, vision_width=32, vision_layers=1,
                             text_width=32, text_layers=1, heads=2, epochs=2, batch_size=4)


def test_reader(corpus):
    rows = read_split(corpus, "train")
    assert len(rows) == 50 and rows[0]["wav"].is_file() and rows[0]["caption"].startswith("a ")
    assert pocket.resolve_corpus(str(corpus)) == corpus.resolve()


def test_pocket_hubert_trains_caches_and_loads(corpus, tmp_path):
    folder = pocket.ensure_pocket_hubert(TINY_HUBERT, corpus, artifacts_dir=tmp_path)
    info = json.loads((folder / "training.json").read_text())
    assert len(info["loss_curve"]) == 3 and folder.name.startswith("hubert-")
    assert (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file()
    stamp = (folder / "training.json").stat().st_mtime_ns
    enc = load_speech_encoder(SpeechEncoderConfig(name="pocket"), pocket_cfg=TINY_HUBERT, corpus_root=corpus,
                              artifacts_dir=tmp_path)
    assert (folder / "training.json").stat().st_mtime_ns == stamp  # cache reused, not retrained
    assert enc.num_hidden_states == 3 and enc.do_normalize
    hs, lens = enc(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    assert hs.shape == (3, 2, 24, 32) and lens.tolist() == [24, 18]


def test_load_backbones_caches_pocket_backbones_under_the_artifacts_dir_it_is_given(corpus, tmp_path):
    from speechclip import load_backbones
    from speechclip.config import Config

    cfg = Config(pocket_hubert=TINY_HUBERT, pocket_clip=TINY_CLIP)
    cfg.data.root, cfg.speech.name, cfg.clip.name, cfg.clip.pretrained = str(corpus), "pocket", "pocket", ""
    artifacts = tmp_path / "my_artifacts"
    speech, clip = load_backbones(cfg, artifacts_dir=artifacts)
    assert speech.num_hidden_states == 3 and clip.embed_dim == 32
    for kind, pocket_cfg in ("hubert", TINY_HUBERT), ("clip", TINY_CLIP):
        assert (pocket.pocket_dir(kind, pocket_cfg, corpus, artifacts) / "training.json").is_file()
        assert not pocket.pocket_dir(kind, pocket_cfg, corpus).exists(), "cached under <repo>/artifacts instead"
    cached = [p.name.split("-")[0] for p in (artifacts / "pocket").iterdir() if not p.name.startswith(".")]
    assert sorted(cached) == ["clip", "hubert"]  # besides hidden lock files


def test_cache_key_depends_on_config_and_corpus(corpus, tmp_path):
    a = pocket.pocket_dir("hubert", TINY_HUBERT, corpus)
    b = pocket.pocket_dir("hubert", PocketHubertConfig(**{**TINY_HUBERT.__dict__, "steps": 4}), corpus)
    assert a != b and a == pocket.pocket_dir("hubert", TINY_HUBERT, str(corpus))


def test_pocket_clip_trains_caches_and_loads(corpus, tmp_path):
    folder = pocket.ensure_pocket_clip(TINY_CLIP, corpus, artifacts_dir=tmp_path)
    assert (folder / "open_clip_config.json").is_file()
    assert pocket.ensure_pocket_clip(TINY_CLIP, corpus, artifacts_dir=tmp_path) == folder
    clip = load_clip(ClipConfig(name="pocket", pretrained=""), pocket_cfg=TINY_CLIP, corpus_root=corpus,
                     artifacts_dir=tmp_path)
    img = clip.preprocess(Image.open(next((corpus / "Images").iterdir())))
    assert img.shape == (3, 32, 32)
    assert clip.encode_image(img[None]).shape == (1, 32)
    assert len(clip.vocab_ids) == 0  # the reduced vocabulary is opt-in (set_vocab)


def test_background_training_writes_the_same_cache_and_a_second_caller_waits_for_it(corpus, tmp_path):
    job = pocket.train_in_background("clip", TINY_CLIP, corpus, artifacts_dir=tmp_path, threads=1)
    assert job.running  # the caller goes on while it trains
    folder = pocket.ensure_pocket_clip(TINY_CLIP, corpus, artifacts_dir=tmp_path)  # waits on the lock
    assert job.wait() == folder == pocket.pocket_dir("clip", TINY_CLIP, corpus, tmp_path)
    stamp = (folder / "training.json").stat().st_mtime_ns
    again = pocket.train_in_background("clip", TINY_CLIP, corpus, artifacts_dir=tmp_path)
    assert not again.running and again.wait() == folder  # cached: nothing started
    assert (folder / "training.json").stat().st_mtime_ns == stamp  # trained once
    assert [p.name for p in (tmp_path / "pocket").iterdir() if p.is_dir()] == [folder.name]


def test_background_training_failure_names_its_log(tmp_path):
    from speechclip.config import PocketClipConfig

    broken = tmp_path / "corpus"
    broken.mkdir()
    (broken / "Flickr8k.token.txt").write_text("")  # no splits, no images: training must fail
    job = pocket.train_in_background("clip", PocketClipConfig(epochs=1), broken, artifacts_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"in the background failed .*log is .*\.log"):
        job.wait()


def test_probes_run(corpus, tmp_path):
    clip = load_clip(ClipConfig(name="pocket", pretrained=""), pocket_cfg=TINY_CLIP, corpus_root=corpus,
                     artifacts_dir=tmp_path)
    r = probes.clip_retrieval(clip, corpus, split="test")
    assert r["pool"] == 5 and r["captions"] == 25
    assert r["text2image_R@5"] == r["text2image_R@10"] == 100.0  # a pool of 5: the image is in the top 5
    for direction in "text2image", "image2text":
        assert 0 <= r[f"{direction}_R@1"] <= r[f"{direction}_R@5"] <= r[f"{direction}_R@10"] <= 100
    enc = load_speech_encoder(SpeechEncoderConfig(name="pocket"), random_init=True, pocket_cfg=TINY_HUBERT)
    w = probes.word_probe(enc, corpus, max_train_utts=50, max_test_utts=25, min_count=2, probe_iters=10)
    assert len(w["mean"]["layer_accuracy"]) == len(w["frame"]["layer_accuracy"]) == 3
    # 10 words; 19 per image (captions of 3, 5, 3, 5, 3 words); "a" starts each of the 25 test captions
    assert (w["num_words"], w["train_tokens"], w["test_tokens"]) == (10, 190, 95)
    assert w["majority_accuracy"] == round(25 / 95, 4)
    # every word is its own tone chord: MFCCs pooled over the word tell them apart, far above the majority
    assert w["mean"]["mfcc_accuracy"] >= 0.9 > w["majority_accuracy"] + 0.5
    assert all(w["majority_accuracy"] < a <= 1 for a in w["mean"]["layer_accuracy"])


def test_speed_perturbed_crop_keeps_length_and_maps_labels(tmp_path):
    import soundfile as sf
    from speechclip import pocket_hubert as ph
    path = tmp_path / "tone.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="PCM_16")
    labels = torch.arange(150)
    plain, plain_ids = ph._crop(path, labels, 10, 50, 50, 1.0)
    fast, fast_ids = ph._crop(path, labels, 10, 50, 55, 1.1)
    assert len(plain) == len(fast) == 49 * 320 + 400
    assert plain_ids.tolist() == list(range(10, 60))
    assert fast_ids.tolist() == [10 + int(j * 1.1) for j in range(50)]
    # played 1.1x faster, the 440 Hz tone comes out near 484 Hz
    peak = lambda w: np.argmax(np.abs(np.fft.rfft(w.numpy()))) * 16000 / len(w)  # noqa: E731
    assert abs(peak(plain) - 440) < 5 and abs(peak(fast) - 484) < 6


def test_unmasked_weight_mixes_the_masked_and_unmasked_cross_entropies():
    from speechclip import pocket_hubert as ph
    from transformers import HubertModel

    cfg = PocketHubertConfig(**{**TINY_HUBERT.__dict__, "mask_prob": 0.2, "mask_length": 2})
    model, head = HubertModel(ph.hubert_config(cfg)).eval(), ph.MaskedPredictionHead(cfg.hidden_size, cfg.num_clusters)
    wavs, targets = torch.randn(2, 49 * 320 + 400), torch.randint(0, cfg.num_clusters, (2, 50))

    def loss(weight):
        return ph._step_loss(model, head, wavs, targets, PocketHubertConfig(**{**cfg.__dict__, "unmasked_weight": weight}),
                             torch.Generator().manual_seed(0))[0]

    # the same mask (same generator seed) in each call: recompute both terms by hand from it
    mask = ph.span_mask(2, 50, cfg.mask_prob, cfg.mask_length, torch.Generator().manual_seed(0))
    normed = torch.nn.functional.layer_norm(wavs, wavs.shape[-1:])
    with torch.no_grad():
        hidden = model(normed, mask_time_indices=mask).last_hidden_state[:, :50]
        masked = torch.nn.functional.cross_entropy(head(hidden[mask]), targets[mask])
        unmasked = torch.nn.functional.cross_entropy(head(hidden[~mask]), targets[~mask])
        assert torch.allclose(loss(0.0), masked, atol=1e-5)
        assert torch.allclose(loss(0.5), 0.5 * masked + 0.5 * unmasked, atol=1e-5)


def test_second_iteration_trains_on_targets_from_the_first_models_features(corpus, tmp_path):
    from speechclip.pocket_hubert import train_pocket_hubert

    cfg = PocketHubertConfig(**{**TINY_HUBERT.__dict__, "second_iteration_steps": 2, "second_iteration_layer": 1})
    info = json.loads((train_pocket_hubert(corpus, cfg, tmp_path / "h2") / "training.json").read_text())
    assert len(info["loss_curve"]) == cfg.steps + 2
    km = info["second_iteration_kmeans"]
    assert km["layer"] == 1 and km["frames"] > cfg.num_clusters
    assert pocket.pocket_dir("hubert", cfg, corpus) != pocket.pocket_dir("hubert", TINY_HUBERT, corpus)


def test_pocket_hubert_options_are_validated():
    from speechclip.config import load_config

    with pytest.raises(ValueError, match="unmasked_weight"):
        load_config("smoke", "parallel", {"pocket_hubert.unmasked_weight": 1.0})
    with pytest.raises(ValueError, match="second_iteration_layer"):
        load_config("smoke", "parallel", {"pocket_hubert.second_iteration_steps": 5,
                                          "pocket_hubert.second_iteration_layer": 9})
    with pytest.raises(ValueError, match="pocket_hubert.precision"):
        load_config("smoke", "parallel", {"pocket_hubert.precision": "fp16"})
    with pytest.raises(ValueError, match="crop_multiple"):
        load_config("smoke", "parallel", {"pocket_hubert.crop_multiple": 0})


def test_crops_are_rounded_to_repeating_lengths(corpus):
    from speechclip import pocket_hubert as ph

    paths = ph._read_corpus(corpus, TINY_HUBERT)
    labels = [torch.zeros((sf.info(str(p)).frames - 400) // 320 + 1, dtype=torch.long) for p in paths]
    for multiple in (1, 8):
        cfg = PocketHubertConfig(**{**TINY_HUBERT.__dict__, "crop_multiple": multiple, "batch_size": 3})
        gen, lengths = torch.Generator().manual_seed(0), set()
        for _ in range(20):
            wavs, targets = ph._batch(paths, labels, cfg, gen)
            frames = targets.shape[1]
            assert wavs.shape[1] == (frames - 1) * 320 + 400
            lengths.add(frames)
        assert all(f % multiple == 0 for f in lengths)
        if multiple == 1:
            assert any(f % 8 for f in lengths)  # the exact cut varies frame by frame


def test_bf16_pretraining_runs_and_records_its_arithmetic(corpus, tmp_path, monkeypatch):
    from speechclip import pocket_hubert as ph

    assert ph.pretraining_autocast("fp32", torch.device("cpu")) is None
    assert ph.pretraining_autocast("bf16", torch.device("cpu")) is torch.bfloat16
    monkeypatch.setattr("speechclip.cpu.cpu_has_native_bf16", lambda: False)
    assert ph.pretraining_autocast("auto", torch.device("cpu")) is None  # emulated bf16 would be slower
    monkeypatch.setattr("speechclip.cpu.cpu_has_native_bf16", lambda: True)
    assert ph.pretraining_autocast("auto", torch.device("cpu")) is torch.bfloat16
    assert ph.pretraining_autocast("auto", torch.device("cuda")) is None
    cfg = PocketHubertConfig(**{**TINY_HUBERT.__dict__, "precision": "bf16"})
    info = json.loads((ph.train_pocket_hubert(corpus, cfg, tmp_path / "h") / "training.json").read_text())
    assert info["precision_used"] == "bfloat16" and all(np.isfinite(loss) for _, loss, _ in info["loss_curve"])
    assert pocket.pocket_dir("hubert", cfg, corpus) != pocket.pocket_dir("hubert", TINY_HUBERT, corpus)


class _Job:
    def __init__(self):
        self.running = True


def test_threads_come_back_when_the_background_training_ends(monkeypatch):
    from speechclip import cpu as threads_mod

    threads = torch.get_num_threads()
    job = _Job()
    try:
        torch.set_num_threads(1)
        pocket.reclaim_threads_after(job, 2)
        pocket.reclaim_threads()
        assert torch.get_num_threads() == 1  # the CLIP still trains: its thread stays its own
        job.running = False
        pocket.reclaim_threads()
        assert torch.get_num_threads() == 2 and not threads_mod._THREADS_HELD
        torch.set_num_threads(1)
        pocket.reclaim_threads()  # registered once: a later call leaves the caller's choice alone
        assert torch.get_num_threads() == 1
        pocket.reclaim_threads_after(job, 2)  # a job that has ended already is not registered
        assert not threads_mod._THREADS_HELD
    finally:
        threads_mod._THREADS_HELD.clear()
        torch.set_num_threads(threads)

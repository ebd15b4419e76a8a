"""The synthetic spoken-caption corpus: Flickr8k layout, speech and alignments, determinism, hard test pool."""
from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from speechclip.synth import captions, corpus, scenes, tts  # noqa: E402
from speechclip.synth.alignment import word_starts  # noqa: E402

SPLIT_SIZES = dict(zip(corpus.SPLITS, corpus.CORPUS_PRESETS["smoke"]))
TOKEN_LINE = re.compile(r"^(syn\d{5})\.jpg#([0-4])\t([a-z ,:]+)$")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    return corpus.make_corpus(tmp_path_factory.mktemp("synthetic") / "smoke", "smoke", seed=0, workers=2,
                              progress=False)


@pytest.fixture(scope="session")
def token_captions(smoke) -> dict[str, str]:
    out = {}
    for line in (smoke / "Flickr8k.token.txt").read_text().splitlines():
        name, caption = line.split("\t")
        image, n = name.split("#")
        out[f"{image[:-4]}_{n}"] = caption
    return out


@pytest.fixture(scope="session")
def ctm(smoke) -> dict[str, list[tuple[str, float, float]]]:
    out = defaultdict(list)
    for line in (smoke / "flickr_8k.ctm").read_text().splitlines():
        uid, channel, start, dur, word = line.split()
        assert channel == "1"
        out[uid].append((word, float(start), float(start) + float(dur)))
    return out


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def test_layout_and_counts(smoke):
    n_images = sum(SPLIT_SIZES.values())
    assert len(list((smoke / "Images").glob("syn*.jpg"))) == n_images
    assert len(list((smoke / "flickr_audio" / "wavs").glob("*.wav"))) == 5 * n_images
    meta = json.loads((smoke / "metadata.json").read_text())
    assert (meta["preset"], meta["seed"], len(meta["images"])) == ("smoke", 0, n_images)
    assert {s: c["images"] for s, c in meta["counts"].items()} == SPLIT_SIZES
    assert not (smoke / corpus._IN_PROGRESS).exists()


def test_token_file_format(smoke):
    lines = (smoke / "Flickr8k.token.txt").read_text().splitlines()
    parsed = [TOKEN_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
    per_image = defaultdict(list)
    for m in parsed:
        per_image[m[1]].append((int(m[2]), m[3]))
    assert all(sorted(n for n, _ in caps) == [0, 1, 2, 3, 4] for caps in per_image.values())
    assert all(len({c for _, c in caps}) == 5 for caps in per_image.values()), "five distinct captions per image"


def test_splits_are_disjoint_and_cover_the_images(smoke):
    splits = {s: (smoke / f"Flickr_8k.{s}Images.txt").read_text().split() for s in corpus.SPLITS}
    assert {s: len(v) for s, v in splits.items()} == SPLIT_SIZES
    names = [n for v in splits.values() for n in v]
    assert len(set(names)) == len(names)
    assert set(names) == {p.name for p in (smoke / "Images").glob("*.jpg")}


def test_images_are_224_rgb_jpegs(smoke):
    from PIL import Image

    with Image.open(next((smoke / "Images").glob("*.jpg"))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (224, 224))


def test_wavs_are_16k_mono_pcm16_speech(smoke):
    for path in sorted((smoke / "flickr_audio" / "wavs").glob("*.wav"))[:25]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        wav, _ = sf.read(path, dtype="float32")
        assert 1.0 < len(wav) / 16000 < 12.0
        assert np.sqrt(np.mean(wav ** 2)) > 0.01, f"{path.name} is near silent"


def test_ctm_words_follow_the_captions_inside_the_audio(smoke, token_captions, ctm):
    assert set(ctm) == set(token_captions)
    for uid, words in ctm.items():
        assert [w for w, _, _ in words] == captions.caption_words(token_captions[uid]), uid
        duration = sf.info(smoke / "flickr_audio" / "wavs" / f"{uid}.wav").duration
        starts, ends = np.array([s for _, s, _ in words]), np.array([e for _, _, e in words])
        assert starts[0] > 0 and ends[-1] <= duration + 1e-3
        assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-3), f"{uid}: spans overlap"


def test_word_spans_hold_the_speech_energy(smoke, ctm):
    ratios = []
    for uid in sorted(ctm)[::4]:
        wav, rate = sf.read(smoke / "flickr_audio" / "wavs" / f"{uid}.wav", dtype="float32")
        inside = np.zeros(len(wav), bool)
        for _, start, end in ctm[uid]:
            inside[int(start * rate):int(end * rate)] = True
        ratios.append(10 * np.log10(np.mean(wav[inside] ** 2) / np.mean(wav[~inside] ** 2)))
    assert min(ratios) > 10 and np.median(ratios) > 15, f"dB inside/outside words: {np.round(ratios, 1)}"


def test_five_distinct_speakers_per_image(smoke):
    speakers = defaultdict(set)
    known = {s.name for s in (*tts.SPEAKERS, *tts.HELD_OUT_SPEAKERS)}  # which split gets which: the test below
    for line in (smoke / "flickr_audio" / "wav2spk.txt").read_text().splitlines():
        wav, speaker = line.split()
        assert re.fullmatch(r"syn\d{5}_[0-4]\.wav", wav) and speaker in known
        speakers[wav.rsplit("_", 1)[0]].add(speaker)
    assert len(speakers) == sum(SPLIT_SIZES.values()) and all(len(s) == 5 for s in speakers.values())


def test_same_seed_gives_identical_files_for_any_worker_count(smoke, tmp_path):
    again = corpus.make_corpus(tmp_path / "again", "smoke", seed=0, workers=1, progress=False)
    assert _digest(again) == _digest(smoke)


def test_every_caption_word_is_one_clip_subword(token_captions):
    import open_clip  # a hard dependency: missing, this must fail, not skip
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    words = set(captions.CONTENT_WORDS) | captions.all_template_words()
    words |= {w for c in token_captions.values() for w in captions.caption_words(c)}
    lengths = {w: int((tokenizer([w])[0] != 0).sum()) - 2 for w in sorted(words)}  # minus start and end tokens
    assert {w: n for w, n in lengths.items() if n != 1} == {}


def test_test_pool_is_made_of_one_attribute_siblings():
    plans = corpus.plan_corpus("cpu", seed=0)
    assert len({p.scene for p in plans}) == len(plans), "scene specs must be unique"
    test = [p for p in plans if p.split == "test"]
    assert len(test) == 500
    kinds, with_sibling = Counter(), 0
    for p in test:
        diffs = [scenes.scene_difference(p.scene, q.scene) for q in test if q is not p]
        singles = [d[0] for d in diffs if len(d) == 1]
        with_sibling += bool(singles)
        kinds.update(set(singles))
    assert with_sibling / len(test) > 0.95
    assert all(kinds[k] > 100 for k in scenes.KINDS), kinds


@pytest.mark.parametrize("kind", scenes.KINDS)
def test_mutate_changes_exactly_one_attribute(kind):
    rng = np.random.default_rng(0)
    for _ in range(200):
        base = scenes.random_scene(rng)
        variant = scenes.mutate(base, kind, rng)
        if variant is not None:
            assert scenes.scene_difference(base, variant) == [kind]


def test_complete_corpus_is_reused_and_other_configs_need_force(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(corpus.CORPUS_PRESETS, "tiny", (2, 1, 1))
    root = corpus.make_corpus(tmp_path / "tiny", "tiny", seed=0, workers=1, progress=False)
    before = _digest(root)
    stamp = (root / "metadata.json").stat().st_mtime_ns
    corpus.make_corpus(root, "tiny", seed=0, progress=False)
    assert "already complete" in capsys.readouterr().out
    assert (root / "metadata.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="force"):
        corpus.make_corpus(root, "tiny", seed=1, progress=False)
    corpus.make_corpus(root, "tiny", seed=1, workers=1, force=True, progress=False)
    assert json.loads((root / "metadata.json").read_text())["seed"] == 1 and _digest(root) != before


def test_never_overwrites_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Images" / "real.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        corpus.make_corpus(tmp_path, "smoke", force=True, progress=False)
    assert (tmp_path / "Images" / "real.jpg").exists()


def _all_files(root: Path) -> dict[str, str]:  # hidden ones too: reading a corpus must not even leave a lock file
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_ensure_corpus_reads_any_corpus_there_and_touches_nothing(flickr_root, monkeypatch, tmp_path):
    before = _all_files(flickr_root)
    assert corpus.ensure_corpus("smoke", flickr_root) == flickr_root  # a real-format Flickr8k folder
    assert _all_files(flickr_root) == before and corpus.synthetic_metadata(flickr_root) is None
    (flickr_root / "metadata.json").write_text(json.dumps({"preset": "mine", "seed": 3}))  # not ours either
    assert corpus.ensure_corpus("smoke", flickr_root) == flickr_root and corpus.synthetic_metadata(flickr_root) is None
    monkeypatch.setitem(corpus.CORPUS_PRESETS, "tiny", (2, 1, 1))
    other_seed = corpus.make_corpus(tmp_path / "seed1", "tiny", seed=1, workers=1, progress=False)
    before = _all_files(other_seed)
    assert corpus.ensure_corpus("smoke", other_seed) == other_seed  # another preset and seed: read as it is
    assert _all_files(other_seed) == before
    assert {k: corpus.synthetic_metadata(other_seed)[k] for k in ("preset", "seed")} == {"preset": "tiny", "seed": 1}


def test_ensure_corpus_makes_the_seed_0_default_only_where_there_is_none(monkeypatch, tmp_path):
    monkeypatch.setitem(corpus.CORPUS_PRESETS, "tiny", (2, 1, 1))
    monkeypatch.setattr(corpus.os, "cpu_count", lambda: 1)
    made = corpus.ensure_corpus("tiny", tmp_path / "new")
    assert corpus.synthetic_metadata(made)["seed"] == 0 and corpus.has_corpus(made)
    half = tmp_path / "half"  # interrupted while writing: ours to finish, whatever seed it had
    corpus.make_corpus(half, "tiny", seed=1, workers=1, progress=False)
    (half / "metadata.json").unlink()
    (half / corpus._IN_PROGRESS).write_text("{}")
    assert not corpus.has_corpus(half) and corpus.synthetic_metadata(half) is None
    corpus.ensure_corpus("tiny", half)
    assert corpus.synthetic_metadata(half)["seed"] == 0 and _digest(half) == _digest(made)
    (tmp_path / "foreign" / "Images").mkdir(parents=True)  # layout files but no corpus, and not ours: left alone
    (tmp_path / "foreign" / "Images" / "real.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        corpus.ensure_corpus("tiny", tmp_path / "foreign")
    assert (tmp_path / "foreign" / "Images" / "real.jpg").read_bytes() == b"not ours"


def test_every_speaker_speaks_repeatably_with_exact_word_times():
    text = "a picture of a big red circle on the left"
    for speaker in tts.SPEAKERS:
        first = tts.synthesize(text, speaker, np.random.default_rng(1))
        assert [w for w, _, _ in first.words] == captions.caption_words(text), speaker
    again = tts.synthesize(text, tts.SPEAKERS[-1], np.random.default_rng(1))
    assert np.array_equal(first.wav, again.wav) and first.words == again.words


def test_merged_words_split_at_a_phoneme_boundary():
    # espeak speaks "of a" as one word: one WORD event, phonemes @ v @; "a" starts at the last phoneme
    words = [("picture", 1), ("of", 9), ("a", 12), ("star", 14)]
    events = [("word", 1, 0, ""), ("word", 9, 400, ""), ("phoneme", 9, 400, "@"), ("phoneme", 9, 450, "v"),
              ("phoneme", 9, 500, "@"), ("word", 14, 560, "")]
    counts = {"of": 2, "a": 1}
    assert word_starts(words, events, counts.get) == [0.0, 0.4, 0.5, 0.56]


def test_binary_fallback_spreads_word_starts_over_the_speech():
    audio = np.zeros(22050, np.int16)
    audio[2205:19845] = 8000  # 0.1-0.9 s of "speech"
    events = tts.proportional_events("a red star", audio, 22050)
    starts = [ms for kind, _, ms, _ in events if kind == "word"]
    assert [pos for kind, pos, _, _ in events if kind == "word"] == [1, 3, 7]
    assert starts == sorted(starts) and 95 <= starts[0] <= 105 and starts[-1] < 900


def test_test_split_speaks_in_held_out_voices_and_seen_voices_repeats_it(smoke):
    train_voices = {s.name for s in tts.SPEAKERS}
    held_out = {s.name for s in tts.HELD_OUT_SPEAKERS}
    assert not train_voices & held_out
    split_of = {}
    for split in corpus.SPLITS:
        for line in (smoke / f"Flickr_8k.{split}Images.txt").read_text().split():
            split_of[line[:-4]] = split
    for line in (smoke / "flickr_audio" / "wav2spk.txt").read_text().splitlines():
        wav, speaker = line.split()
        assert speaker in (held_out if split_of[wav.rsplit("_", 1)[0]] == "test" else train_voices), line
    seen = smoke / corpus.SEEN_VOICES
    test_images = (smoke / "Flickr_8k.testImages.txt").read_text()
    assert (seen / "Flickr_8k.testImages.txt").read_text() == test_images
    assert not (seen / "Flickr_8k.trainImages.txt").exists()
    seen_speakers = dict(line.split() for line in (seen / "flickr_audio" / "wav2spk.txt").read_text().splitlines())
    assert len(seen_speakers) == 5 * SPLIT_SIZES["test"] and set(seen_speakers.values()) <= train_voices
    captions_of = lambda root: {ln.split("\t")[0]: ln.split("\t")[1]  # noqa: E731
                                for ln in (root / "Flickr8k.token.txt").read_text().splitlines()}
    main = captions_of(smoke)
    assert all(main[k] == v for k, v in captions_of(seen).items())  # the same captions, other voices


def test_a_corpus_from_an_older_generator_is_replaced_without_force(tmp_path, monkeypatch):
    root = corpus.make_corpus(tmp_path, "smoke", progress=False)
    meta = json.loads((root / "metadata.json").read_text())
    (root / "metadata.json").write_text(json.dumps({**meta, "generator_version": "0"}))
    corpus.make_corpus(tmp_path, "smoke", progress=False)
    assert json.loads((root / "metadata.json").read_text())["generator_version"] == corpus.GENERATOR_VERSION
    with pytest.raises(FileExistsError, match="force"):  # another seed is another corpus: still refused
        corpus.make_corpus(tmp_path, "smoke", seed=3, progress=False)

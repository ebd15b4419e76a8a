"""Faults outside the corpus readers: stale caches, images on the pipeline path, broken weights, OpenAI QuickGELU."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from speechclip import pipeline
from speechclip.data import CorpusError, FlickrDataset
from speechclip.features import cached_features, cached_image_embeds
from tiny import tiny_clip, tiny_config, tiny_speech_encoder


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _replace_later(write):
    time.sleep(0.05)  # a replacement comes later than the original; coarse file clocks tick every few ms
    write()


# ---------------------------------------------------------------- caches that cannot go stale

def test_feature_cache_notices_a_replaced_wav_of_the_same_size(flickr_root, writers, tmp_path):
    encoder = tiny_speech_encoder()
    ds = FlickrDataset(flickr_root, "dev", load_images=False)
    first = cached_features(encoder, ds, tmp_path, "speech-x")
    path = ds.utterances[0].wav_path
    size = path.stat().st_size
    _replace_later(lambda: writers.wav(path, len(ds[0]["wav"]) / 16000, seed=999))  # other content, same length
    assert path.stat().st_size == size
    again = FlickrDataset(flickr_root, "dev", load_images=False)
    store = cached_features(encoder, again, tmp_path, "speech-x")
    assert store.directory != first.directory
    wav = again[0]["wav"]
    hidden, lens = encoder(wav[None], torch.tensor([len(wav)]))
    assert torch.allclose(store[0], hidden[:, 0, : int(lens[0])].transpose(0, 1), atol=1e-2)  # fp16 cache
    assert not torch.allclose(store[0], first[0])


def test_image_cache_notices_a_replaced_image(flickr_root, writers, tmp_path):
    clip = tiny_clip()
    ds = FlickrDataset(flickr_root, "dev", load_images=False)
    before, ids = cached_image_embeds(clip, ds, tmp_path, "clip-x")
    _replace_later(lambda: writers.jpeg(ds.utterances[0].image_path, 5))
    after, ids_after = cached_image_embeds(clip, FlickrDataset(flickr_root, "dev", load_images=False), tmp_path,
                                           "clip-x")
    assert torch.equal(ids, ids_after) and not torch.allclose(before[0], after[0])
    assert torch.allclose(before[1], after[1])  # the other image is unchanged


# ---------------------------------------------------------------- the pipeline validates images

@pytest.fixture
def tiny_pipeline(flickr_root, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "load_backbones", lambda cfg, artifacts_dir=None: (tiny_speech_encoder(),
                                                                                      tiny_clip()))

    def prepare(on_error):
        cfg = tiny_config("parallel", **{"data.root": str(flickr_root), "data.on_error": on_error})
        return pipeline.prepare(cfg, tmp_path / "artifacts", splits=("train", "dev"))
    return prepare


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_pipeline_raises_or_counts_a_bad_image(flickr_root, tiny_pipeline, capsys, damage):
    image = FlickrDataset(flickr_root, "dev", load_audio=False).utterances[0].image_path
    data = image.read_bytes()
    image.write_bytes(b"not an image" * 50 if damage == "corrupt" else data[: len(data) // 2])
    with pytest.raises(CorpusError, match=rf"{image.name}: corrupt image\. Fix: re-extract"):
        tiny_pipeline("raise")
    for _ in range(2):  # computed, then from the cache: the same five utterances are left out each time
        exp = tiny_pipeline("skip")
        dev = exp.datasets["dev"]
        assert dev.skipped == [(str(image), "corrupt image")] * 5 and len(exp.features["dev"]) == 5
        assert "skipped 5 of 10 utterances: 5 corrupt image" in capsys.readouterr().out
        exp.features["dev"][4]  # every utterance left has its image embedding
    assert len(exp.features["train"]) == 20


def test_pipeline_missing_image_is_named(flickr_root, tiny_pipeline):
    image = FlickrDataset(flickr_root, "dev", load_audio=False).utterances[0].image_path
    image.unlink()
    with pytest.raises(CorpusError, match=rf"{image.name}: missing image"):
        tiny_pipeline("raise")
    assert len(tiny_pipeline("skip").features["dev"]) == 5


def test_feature_store_reads_what_was_written_and_names_a_cut_short_cache(flickr_root, tmp_path):
    import numpy as np

    from speechclip.features import FeatureStore

    encoder = tiny_speech_encoder()
    ds = FlickrDataset(flickr_root, "dev", load_images=False)
    store = cached_features(encoder, ds, tmp_path, "speech-x")
    mapped = np.memmap(store.path, dtype=np.float16, mode="r", shape=store.shape)  # the bytes as written
    for i in range(len(store)):
        start, n = store.offsets[i], store.lengths[i]
        assert torch.equal(store[i], torch.from_numpy(np.array(mapped[start: start + n], dtype=np.float32)))
    del mapped
    with open(store.path, "r+b") as fh:  # an interrupted copy
        fh.truncate(store.path.stat().st_size - 2)
    with pytest.raises(ValueError, match=r"hidden\.f16.*cut short.*Delete"):
        FeatureStore(store.directory)

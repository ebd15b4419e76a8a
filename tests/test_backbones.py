"""Speech and CLIP backbones: loading by path, shapes, frozen-ness, padding, vocabulary, keyword encoding."""
from __future__ import annotations

import json
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may wait on the network

import open_clip
import pytest
import torch
from transformers import HubertConfig, HubertModel

from speechclip.clip_encoder import load_clip
from speechclip.config import ClipConfig, PocketClipConfig, SpeechEncoderConfig
from speechclip.corpora import WeightsError
from speechclip.pocket_clip import build_pocket_clip, save_pocket_clip
from speechclip.speech_encoder import WeightedLayerSum, conv_output_lengths, frozen_autocast, load_speech_encoder

CAPTIONS = ["a dog runs on the grass", "a red dog", "two dogs play in the water", "a child on the grass"]


def _tiny_hubert(folder, norm="group", stable=False, do_normalize=None, precision="fp32"):
    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                       conv_dim=[16] * 7, feat_extract_norm=norm, do_stable_layer_norm=stable, conv_bias=stable,
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    HubertModel(cfg).save_pretrained(folder)
    if do_normalize is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": do_normalize}))
    return load_speech_encoder(SpeechEncoderConfig(name=str(folder), precision=precision))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = PocketClipConfig(embed_dim=24, image_size=32, patch_size=16, vision_width=32, vision_layers=1,
                           text_width=32, text_layers=2, heads=2)
    model, _ = build_pocket_clip(cfg)
    return save_pocket_clip(model, cfg, tmp_path_factory.mktemp("clip")), model


@pytest.fixture(scope="module")
def clip(clip_dir):
    enc = load_clip(ClipConfig(name=str(clip_dir[0]), pretrained=""))
    enc.set_vocab(CAPTIONS)
    return enc


def test_hubert_by_path_shapes_and_frozen(tmp_path):
    enc = _tiny_hubert(tmp_path)
    wavs, lens = torch.randn(2, 16000), torch.tensor([16000, 9000])
    hs, feat_lens = enc(wavs, lens)
    assert hs.shape == (4, 2, 49, 32) and enc.num_hidden_states == 4 and enc.hidden_size == 32
    assert feat_lens.tolist() == [49, 27] == [(n - 400) // 320 + 1 for n in (16000, 9000)]  # exact, not round(n/320)
    assert torch.all(hs[:, 1, 27:] == 0)
    assert not any(p.requires_grad for p in enc.parameters()) and not hs.requires_grad
    enc.train()
    assert not enc.model.training and not enc.do_normalize  # group-norm HuBERT (base): no waveform norm


@pytest.mark.parametrize("norm,stable", [("group", False), ("layer", True)])
def test_padding_invariance(tmp_path, norm, stable):
    enc = _tiny_hubert(tmp_path, norm, stable)
    short, long = torch.randn(7000), torch.randn(12000)
    alone, _ = enc(short[None], torch.tensor([7000]))
    batch = torch.zeros(2, 12000)
    batch[0, :7000], batch[1] = short, long
    both, lens = enc(batch, torch.tensor([7000, 12000]))
    assert torch.allclose(alone[:, 0], both[:, 0, :lens[0]], atol=1e-5)


def test_frozen_precision(tmp_path):
    """speech.precision: "auto" is bf16 only on a CPU with native bf16, never on CUDA; outputs come back in fp32,
    close to the fp32 pass (bf16 keeps 8 bits of mantissa), and still independent of the batch's padding."""
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert frozen_autocast("auto", torch.device("cpu")) == (torch.bfloat16 if native else None)
    assert frozen_autocast("auto", torch.device("cuda")) is None and frozen_autocast("fp32", torch.device("cpu")) is None
    assert frozen_autocast("bf16", torch.device("cpu")) == torch.bfloat16
    exact = _tiny_hubert(tmp_path / "a", "layer", True)
    low = _tiny_hubert(tmp_path / "b", "layer", True, precision="bf16")
    assert exact.precision == "fp32" and low.precision == "bf16"
    wavs, lens = torch.randn(2, 12000), torch.tensor([7000, 12000])
    wavs[0, 7000:] = 0
    a, _ = exact(wavs, lens)
    b, _ = low(wavs, lens)
    assert b.dtype == torch.float32 and b.shape == a.shape
    for layer in range(a.shape[0]):
        assert float((a[layer] - b[layer]).norm() / a[layer].norm()) < 0.05
    alone, _ = low(wavs[:1, :7000], lens[:1])
    assert torch.allclose(alone[:, 0], b[:, 0, :alone.shape[2]], atol=0.1)
    with pytest.raises(ValueError, match="precision"):
        type(exact)(exact.model, precision="half")


def test_waveform_normalisation_from_preprocessor_config(tmp_path):
    enc = _tiny_hubert(tmp_path, "layer", True, do_normalize=True)
    wav = torch.randn(1, 8000)
    assert enc.do_normalize
    assert torch.allclose(enc(wav, torch.tensor([8000]))[0], enc(3 * wav + 0.1, torch.tensor([8000]))[0], atol=1e-4)


def test_finetune_top_layers(tmp_path):
    _tiny_hubert(tmp_path)
    enc = load_speech_encoder(SpeechEncoderConfig(name=str(tmp_path), finetune_top_layers=1))
    trainable = {n.split(".")[3] for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"2"}  # only encoder.layers.2
    hs, lens = enc(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    top = enc.forward_top(hs[2].detach(), lens, start_layer=2)
    assert len(top) == 1 and torch.allclose(top[0], hs[3], atol=1e-6)
    top[0].sum().backward()
    assert enc.model.encoder.layers[2].feed_forward.output_dense.weight.grad is not None


def test_weighted_layer_sum():
    hs = torch.randn(5, 2, 7, 8)
    wls = WeightedLayerSum(5)
    assert torch.allclose(torch.softmax(wls.weights, 0), torch.full((5,), 0.2))
    assert torch.allclose(wls(hs), hs.mean(0), atol=1e-6)
    normed = WeightedLayerSum(5, normalize=True)(hs * 10 + 3)
    assert torch.allclose(normed, torch.nn.functional.layer_norm(hs, (8,)).mean(0), atol=1e-4)


def test_conv_lengths_match_model():
    model = HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, conv_dim=[8] * 7))
    lens = torch.tensor([400, 719, 720, 16000, 102400])
    assert torch.equal(conv_output_lengths(lens, model.config.conv_kernel, model.config.conv_stride),
                       model._get_feat_extract_output_lengths(lens))


def test_random_init_parameter_counts():
    base = load_speech_encoder(SpeechEncoderConfig(), random_init=True)
    assert sum(p.numel() for p in base.parameters()) == 94_371_712  # fairseq's 94,697,600 minus pretraining heads
    clip = load_clip(ClipConfig(), random_init=True)
    assert sum(p.numel() for p in clip.parameters()) == 151_277_313  # §8.2


def test_missing_downloads_explain_themselves(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download facebook/hubert-base-ls960"):
        load_speech_encoder(SpeechEncoderConfig(), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download timm/"):
        load_clip(ClipConfig(), cache_dir=tmp_path)


def test_clip_loads_from_folder_frozen(clip, clip_dir):
    _, model = clip_dir
    for (name, a), b in zip(clip.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in clip.parameters())
    assert clip.embed_dim == 24 and clip.token_dim == 32 and clip.tokenize(CAPTIONS).shape == (4, 77)
    img = torch.randn(3, 3, 32, 32)
    assert torch.allclose(clip.encode_image(img).norm(dim=-1), torch.ones(3))


def test_encode_text_matches_open_clip(clip):
    ids = clip.tokenize(CAPTIONS)
    ref = torch.nn.functional.normalize(clip.model.encode_text(ids), dim=-1)
    assert torch.allclose(clip.encode_text(CAPTIONS), ref, atol=1e-5)
    assert clip.model.token_embedding.weight.shape[0] == 49408  # pitfall 2: the full table stays


def test_reduced_vocabulary(clip):
    ids = clip.tokenize([c for c in CAPTIONS])
    counts = torch.bincount(ids.flatten(), minlength=49408)
    v = clip.vocab_ids
    assert len(v) == int((counts > 0).sum()) and v[0] == 0  # padding zeros are the most frequent id
    pairs = [(-int(counts[i]), int(i)) for i in v]
    assert pairs == sorted(pairs)  # count descending, ties by id
    sot, eot = clip.tokenizer.sot_token_id, clip.tokenizer.eot_token_id
    assert v[clip.special_vocab_positions].tolist() == [0, sot, eot]
    assert torch.equal(clip.vocab_embeds, clip.model.token_embedding.weight[v])
    assert clip.decode_vocab([int((v == 320).nonzero())]) == ["a"]  # id 320 is "a</w>"


def test_encode_keywords_equals_encode_text(clip):
    ids = clip.tokenize(CAPTIONS[:2])
    lengths = (ids == clip.eot_id).int().argmax(-1) - 1  # subwords between SOT and EOT
    K = int(lengths.max())
    kw = clip.model.token_embedding(ids[:, 1:K + 1]).clone()  # (B, K, D_t), padded past each caption
    out = clip.encode_keywords(kw, lengths)
    assert torch.allclose(out, clip.encode_text(CAPTIONS[:2]), atol=1e-5)
    one = clip.encode_keywords(kw[:1, :int(lengths[0])])
    assert torch.allclose(one, out[:1], atol=1e-5)


def test_keyword_gradients_reach_inputs_only(clip):
    kw = torch.randn(2, 8, clip.token_dim, requires_grad=True)
    clip.encode_keywords(kw).sum().backward()
    assert kw.grad is not None and kw.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.parameters())


def test_open_clip_tokenizer_is_real_bpe():
    ids = open_clip.get_tokenizer("ViT-B-32")(["a dog"])[0]
    assert ids[:4].tolist() == [49406, 320, 1929, 49407]


# ---------------------------------------------------------------- broken weights name themselves

def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_broken_hubert_folder_is_named_not_sent_to_download(tmp_path):
    _tiny_hubert(tmp_path)
    weights = tmp_path / "model.safetensors"
    _cut(weights)
    with pytest.raises(WeightsError, match=rf"{tmp_path}: a HuBERT folder that does not load \(Safetensor") as err:
        load_speech_encoder(SpeechEncoderConfig(name=str(tmp_path)))
    assert "huggingface-cli" not in str(err.value)
    assert load_speech_encoder(SpeechEncoderConfig(name=str(tmp_path)), random_init=True)  # needs no weights
    (tmp_path / "preprocessor_config.json").write_text("{cut sho")
    with pytest.raises(WeightsError, match=r"does not load \(JSONDecodeError"):
        load_speech_encoder(SpeechEncoderConfig(name=str(tmp_path)), random_init=True)
    (tmp_path / "preprocessor_config.json").unlink()
    weights.unlink()
    with pytest.raises(WeightsError, match="does not load.*no file named model.safetensors") as err:
        load_speech_encoder(SpeechEncoderConfig(name=str(tmp_path)))
    assert "huggingface-cli" not in str(err.value)


@pytest.mark.filterwarnings("ignore:.*cannot tell whether these ViT-B-32 weights")  # a made-up file
def test_broken_clip_folder_or_file_is_named(clip_dir, tmp_path, monkeypatch):
    import shutil

    folder = shutil.copytree(clip_dir[0], tmp_path / "clip")
    _cut(folder / "open_clip_model.safetensors")
    with pytest.raises(WeightsError, match=rf"{folder}: CLIP weights that exist but do not load"):
        load_clip(ClipConfig(name=str(folder), pretrained=""))
    (folder / "open_clip_model.safetensors").unlink()  # open_clip alone would load random weights, logging a line
    with pytest.raises(WeightsError, match="open_clip_config.json but no weights file"):
        load_clip(ClipConfig(name="ViT-B-32", pretrained=str(folder)))
    (folder / "open_clip_config.json").unlink()
    with pytest.raises(WeightsError, match="no open_clip_config.json, so not an open_clip folder"):
        load_clip(ClipConfig(name=str(folder), pretrained=""))
    with pytest.raises(FileNotFoundError, match="nowhere.bin: no such weights file") as err:
        load_clip(ClipConfig(name="ViT-B-32", pretrained=str(tmp_path / "nowhere.bin")))
    assert "unreachable" not in str(err.value)

    def cut_short(*args, **kwargs):  # what open_clip raises for a cut-short .bin, without building ViT-B/32
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", cut_short)
    weights = tmp_path / "open_clip_pytorch_model.bin"
    weights.write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(WeightsError, match=rf"{weights.name}: CLIP weights that exist but do not load \(Runtime"):
        load_clip(ClipConfig(name="ViT-B-32", pretrained=str(weights)))


# ---------------------------------------------------------------- OpenAI weights from a file get QuickGELU

@pytest.fixture
def created(monkeypatch):
    """Record what load_clip asks open_clip for, and hand back a tiny model instead of ViT-B/32."""
    calls = []

    def fake_create(name, pretrained=None, load_weights=True, force_quick_gelu=False, cache_dir=None):
        calls.append({"name": name, "pretrained": pretrained, "quick_gelu": force_quick_gelu})
        model, preprocess = build_pocket_clip(PocketClipConfig(embed_dim=16, image_size=32, patch_size=16,
                                                               vision_width=16, vision_layers=1, text_width=16,
                                                               text_layers=1, heads=2))
        return model, None, preprocess

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    return calls


def _openai_jit(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; OpenAI's release is one
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


@pytest.mark.parametrize("where, make, quick", [
    ("vit_base_patch32_clip_224.openai/open_clip_pytorch_model.bin", None, True),  # the hub repository's name
    ("models--timm--vit_base_patch32_clip_224.openai/snapshots/abc/open_clip_pytorch_model.bin", None, True),
    ("ViT-B-32.pt", _openai_jit, True),
    ("hub/open_clip_pytorch_model.bin", {"model_cfg": {"quick_gelu": True}}, True),
    ("laion/open_clip_pytorch_model.bin", {"model_cfg": {}}, False),
])
def test_openai_weights_from_a_file_get_quick_gelu(created, tmp_path, where, make, quick):
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(make):
        make(path)
    else:
        path.write_bytes(b"weights")
        if make is not None:
            (path.parent / "open_clip_config.json").write_text(json.dumps(make))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every file here is decidable: no "cannot tell" warning
        load_clip(ClipConfig(name="ViT-B-32", pretrained=str(path)))
    assert created[-1]["quick_gelu"] is quick and created[-1]["pretrained"] == str(path)


def test_quick_gelu_by_tag_and_an_undecidable_file_warns(created, tmp_path):
    load_clip(ClipConfig(name="ViT-B-32", pretrained="openai"))
    assert created[-1]["quick_gelu"] is True
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights")
    with pytest.warns(UserWarning, match="cannot tell whether these ViT-B-32 weights are OpenAI's.*ViT-B-32-quickgelu"):
        load_clip(ClipConfig(name="ViT-B-32", pretrained=str(path)))
    assert created[-1]["quick_gelu"] is False
    folder = tmp_path / "vit_base_patch32_clip_224.openai"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    load_clip(ClipConfig(name="ViT-B-32", pretrained=str(folder)))
    assert created[-1] == {"name": f"local-dir:{folder}", "pretrained": None, "quick_gelu": True}


def test_frame_pool_averages_real_frames_and_stays_padding_invariant(tmp_path):
    from speechclip.speech_encoder import pool_frames
    enc = _tiny_hubert(tmp_path, "layer", True)
    full, full_lens = enc(torch.randn(1, 9000), torch.tensor([9000]))
    enc.frame_pool = 4
    short, long = torch.randn(7000), torch.randn(12000)
    batch = torch.zeros(2, 12000)
    batch[0, :7000], batch[1] = short, long
    pooled, lens = enc(batch, torch.tensor([7000, 12000]))
    alone, alone_lens = enc(short[None], torch.tensor([7000]))
    raw = conv_output_lengths(torch.tensor([7000, 12000]), enc.model.config.conv_kernel, enc.model.config.conv_stride)
    assert lens.tolist() == [-(-int(n) // 4) for n in raw]  # ceil(frames / 4)
    assert torch.allclose(alone[:, 0], pooled[:, 0, :lens[0]], atol=1e-5)  # padding never enters a window
    assert enc.frame_rate == pytest.approx(16000 / 320 / 4)
    # the last window of a 9-frame utterance averages its one real frame, not three zeros of padding
    states = torch.arange(9.0).reshape(1, 1, 9, 1).expand(2, 1, 9, 3)
    out, out_lens = pool_frames(states, torch.tensor([9]), 4)
    assert out_lens.tolist() == [3] and out[0, 0, :, 0].tolist() == [1.5, 5.5, 8.0]
    assert full_lens.tolist() == [int(conv_output_lengths(torch.tensor([9000]), enc.model.config.conv_kernel,
                                                          enc.model.config.conv_stride))]


def test_tokenize_remembers_captions_and_gives_the_tokenizers_ids(clip, monkeypatch):
    import speechclip.clip_encoder as ce
    texts = ["a dog runs", "two cats sit", "a dog runs", "a red ball"]
    assert torch.equal(clip.tokenize(texts), clip.tokenizer(texts))
    assert torch.equal(clip.tokenize("two cats sit"), clip.tokenizer(["two cats sit"]))
    calls = []
    monkeypatch.setattr(clip, "tokenizer", lambda t: calls.append(list(t)) or ce.open_clip.get_tokenizer("ViT-B-32")(t))
    assert torch.equal(clip.tokenize(texts + ["a blue car"]), ce.open_clip.get_tokenizer("ViT-B-32")(texts + ["a blue car"]))
    assert calls == [["a blue car"]]  # only the caption it had not seen
    monkeypatch.setattr(ce, "TOKEN_MEMO", len(clip._token_rows))  # full: tokenizes without remembering more
    clip.tokenize(["a green tree"])
    assert "a green tree" not in clip._token_rows and clip.tokenize([]).shape[0] == 0

"""Model tests: shapes, trainable parameters, keywords, save/load, and the paper's parameter counts."""
import pytest
import torch

from speechclip.cascaded import KeywordBatchNorm
from speechclip.config import load_config
from speechclip.features import collate_features
from speechclip.model import build_model, load_model
from tiny import CAPTIONS, ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder


def make(family):
    return build_model(tiny_config(family), tiny_speech_encoder(), tiny_clip())


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_encode_speech_shapes_and_norm(family):
    model = make(family).eval()
    wavs, lens = torch.randn(3, 16000), torch.tensor([16000, 12000, 8000])
    out = model.encode_speech(wavs, lens)
    assert out["speech_embeds"].shape == (3, 32)
    assert torch.allclose(out["speech_embeds"].norm(dim=-1), torch.ones(3), atol=1e-5)
    if family == "cascaded":
        assert out["keyword_embeds"].shape == (3, 8, 32) and out["keyword_ids"].shape == (3, 8)


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_only_branch_and_layer_weights_train(family):
    model = make(family).train()
    batch = collate_features([ToyFeatures()[i] for i in range(6)])
    model(batch)["loss"].backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith(("speech_encoder.", "clip.")) for n in trainable)
    assert all(model.get_parameter(n).grad is not None for n in trainable if "log_scale" not in n)
    assert not model.speech_encoder.training and not model.clip.training  # frozen encoders: eval (pitfall 12)


def test_cascaded_keywords_are_real_subwords_never_special():
    model = make("cascaded").eval()
    out = model.encode_speech(torch.randn(2, 16000), torch.tensor([16000, 9000]))
    vocab = model.clip.vocab_embeds
    assert torch.allclose(out["keyword_embeds"], vocab[out["keyword_ids"]], atol=1e-5)
    assert not set(out["keyword_ids"].flatten().tolist()) & set(model.clip.special_vocab_positions.tolist())
    words = model.keywords(torch.randn(2, 16000), torch.tensor([16000, 9000]))
    assert len(words) == 2 and len(words[0]) == 8 and all(isinstance(w[0], str) for w in words[0])


def test_keyword_batchnorm_init_intended_and_reference():
    vocab = torch.randn(20, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + torch.tensor([0.0, 10.0, 20.0, 30.0])
    intended = KeywordBatchNorm(3, 4, vocab, "intended").bn
    assert torch.allclose(intended.bias.view(3, 4), vocab.mean(0).expand(3, 4))
    reference = KeywordBatchNorm(3, 4, vocab, "reference").bn  # feature (k, d) gets dim (d*K + k) mod D
    assert reference.bias.view(3, 4)[1, 1].item() == pytest.approx(vocab.mean(0)[(1 * 3 + 1) % 4].item())


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_save_load_round_trip(tmp_path, family):
    model = make(family).eval()
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", tiny_speech_encoder(), tiny_clip()).eval()
    batch = collate_features([ToyFeatures()[i] for i in range(4)])
    a, b = model(batch)["speech_embeds"], loaded(batch)["speech_embeds"]
    assert torch.allclose(a, b, atol=1e-6)
    saved = torch.load(tmp_path / "m.pt", weights_only=False)["state"]
    assert not any(k.startswith("clip.") for k in saved)  # no frozen or duplicated CLIP weights (pitfall 18)


@pytest.mark.parametrize("family, expected", [("parallel", 7_483_917), ("cascaded", 2_771_981)])
def test_base_trainable_parameter_counts_match_the_paper(family, expected):
    model = build_model(load_config("base", family), vocab_captions=CAPTIONS, random_init=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected
    total = sum(p.numel() for p in model.parameters())
    assert 245e6 < total < 257e6  # HF HubertModel lacks fairseq's pre-training heads (see README)


def test_utterance_norm_normalises_real_frames_and_ignores_padding():
    from speechclip.model import pad_mask_from_lens, utterance_norm
    feats = 3 + 2 * torch.randn(2, 10, 6)
    mask = pad_mask_from_lens(torch.tensor([10, 7]), 10)
    out = utterance_norm(feats, mask)
    alone = utterance_norm(feats[1:, :7], pad_mask_from_lens(torch.tensor([7]), 7))
    assert torch.allclose(out[1, :7], alone[0], atol=1e-5) and (out[1, 7:] == 0).all()
    assert torch.allclose(out[0].mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(out[0].var(0, unbiased=False), torch.ones(6), atol=1e-3)

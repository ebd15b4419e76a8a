"""Model tests: shapes, trainable parameters, keywords, save/load, and the paper's parameter counts."""
import pytest
import torch

from speechclip.cascaded import KeywordBatchNorm
from speechclip.config import FAMILIES, load_config
from speechclip.features import collate_features
from speechclip.model import build_model, load_backbones, load_model
from tiny import CAPTIONS, ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder

KEYWORD_FAMILIES = ("cascaded", "cascaded_plus", "hybrid", "hybrid_plus")


def make(family):
    return build_model(tiny_config(family), tiny_speech_encoder(), tiny_clip())


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_speech_shapes_and_norm(family):
    model = make(family).eval()
    wavs, lens = torch.randn(3, 16000), torch.tensor([16000, 12000, 8000])
    out = model.encode_speech(wavs, lens)
    assert out["speech_embeds"].shape == (3, 32)
    for key in ("speech_embeds", "parallel_embeds", "cascaded_embeds"):
        if key in out:
            assert torch.allclose(out[key].norm(dim=-1), torch.ones(3), atol=1e-5)
    if family in ("cascaded", "hybrid"):
        assert out["keyword_embeds"].shape == (3, 8, 32) and out["keyword_ids"].shape == (3, 8)
    if family in ("cascaded_plus", "hybrid_plus"):  # CIF: N_i keywords each, padded to the longest
        n = int(out["keyword_lens"].max())
        assert out["keyword_embeds"].shape == (3, n, 32) and out["keyword_ids"].shape == (3, n)
        assert ((out["keyword_ids"] == -1) == out["keyword_mask"]).all()
    assert ("parallel_embeds" in out) == (family in ("parallel", "hybrid", "hybrid_plus"))


@pytest.mark.parametrize("family", FAMILIES)
def test_only_branch_and_layer_weights_train(family):
    model = make(family).train()
    batch = collate_features([ToyFeatures()[i] for i in range(6)])
    model(batch)["loss"].backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith(("speech_encoder.", "clip.")) for n in trainable)
    assert all(model.get_parameter(n).grad is not None for n in trainable if "log_scale" not in n)
    assert not model.speech_encoder.training and not model.clip.training  # frozen encoders: eval (pitfall 12)


@pytest.mark.parametrize("family", KEYWORD_FAMILIES)
def test_cascaded_keywords_are_real_subwords_never_special(family):
    model = make(family).eval()
    wavs, lens = torch.randn(2, 16000), torch.tensor([16000, 9000])
    out = model.encode_speech(wavs, lens)
    vocab, ids = model.clip.vocab_embeds, out["keyword_ids"]
    fired = ids >= 0  # CIF pads with -1 past each utterance's N_i
    assert torch.allclose(out["keyword_embeds"][fired], vocab[ids[fired]], atol=1e-5)
    assert not set(ids[fired].tolist()) & set(model.clip.special_vocab_positions.tolist())
    words = model.keywords(wavs, lens)
    counts = out.get("keyword_lens", torch.tensor([8, 8])).tolist()
    assert len(words) == 2 and [len(w) for w in words] == counts and all(isinstance(w[0], str) for w in words[0])


@pytest.mark.parametrize("family", ["cascaded", "cascaded_plus"])
def test_content_codebook_never_picks_function_words_or_punctuation(family):
    from speechclip.evaluation import FUNCTION_WORDS, keyword_metrics, keyword_neighbours
    model = build_model(tiny_config(family, **{"model.keyword_vocab": "content"}), tiny_speech_encoder(), tiny_clip())
    model.eval()
    masked = model.keyword_masked_positions
    words = model.clip.decode_vocab(masked)
    assert set(model.clip.special_vocab_positions.tolist()) <= set(masked.tolist())
    assert {"a", "of"} <= set(words)  # the tiny captions' function words
    kept = model.clip.decode_vocab([i for i in range(len(model.clip.vocab_ids)) if i not in set(masked.tolist())])
    assert kept and not set(kept) & FUNCTION_WORDS and all(any(c.isalpha() for c in w) for w in kept)
    out = model.encode_speech(torch.randn(4, 16000), torch.tensor([16000, 12000, 9000, 16000]))
    ids = out["keyword_ids"]
    assert not set(ids[ids >= 0].tolist()) & set(masked.tolist())
    nearest = keyword_neighbours(model, out["keyword_embeds"].float(), 3)  # original CLIP ids
    assert not set(nearest.flatten().tolist()) & set(model.clip.vocab_ids[masked].tolist())
    # chance is counted over the subwords a slot can pick
    emb = {"keyword_embeds": out["keyword_embeds"].float(), "texts": CAPTIONS[:4]}
    if "keyword_lens" in out:
        emb["keyword_lens"] = out["keyword_lens"]
    content = keyword_metrics(model, emb)["kw_top1_chance"]
    model.cfg.model.keyword_vocab = "all"
    assert keyword_metrics(model, emb)["kw_top1_chance"] < content
    assert len(model.keyword_masked_positions) == len(model.clip.special_vocab_positions)


@pytest.mark.parametrize("family", ["cascaded_plus", "hybrid_plus"])
def test_cif_model_is_padding_invariant_and_scales_only_early_in_training(family):
    model = make(family).eval()
    items = [ToyFeatures()[i] for i in range(5)]
    batch = collate_features(items)
    out = model(batch)
    for b in (0, 3):
        alone = model(collate_features([items[b]]))
        n = int(alone["keyword_lens"][0])
        assert int(out["keyword_lens"][b]) == n
        assert torch.equal(out["keyword_ids"][b, :n], alone["keyword_ids"][0])
        assert torch.allclose(out["speech_embeds"][b], alone["speech_embeds"][0], atol=1e-5)
    model.train()
    early, late = model(batch, step=0), model(batch, step=model.cfg.model.cif_scaling_steps)
    assert torch.equal(early["keyword_lens"], early["quantity_target"]) and early["cif_count_error"] == 0
    assert torch.equal(late["keyword_lens"], torch.floor(late["quantity"]).clamp(min=1).long())
    assert {"quantity_loss", "cif_tokens", "cif_target"} <= late.keys()
    expected = late["cascaded_loss"] + 0.25 * late["quantity_loss"] + late.get("parallel_loss", 0)
    assert torch.allclose(late["loss"], expected)


def test_quantity_target_from_captions():
    model = build_model(tiny_config("cascaded_plus", **{"model.quantity_target": "content_words"}),
                        tiny_speech_encoder(), tiny_clip()).train()
    batch = collate_features([ToyFeatures()[i] for i in range(4)])  # captions: CAPTIONS[0..3]
    out = model(batch, step=0)
    assert out["quantity_target"].tolist() == [3, 3, 5, 5]  # "a"/"of" are function words
    assert out["keyword_lens"].tolist() == [3, 3, 5, 5]


def test_keyword_batchnorm_init_intended_and_reference():
    vocab = torch.randn(20, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + torch.tensor([0.0, 10.0, 20.0, 30.0])
    intended = KeywordBatchNorm(3, 4, vocab, "intended").bn
    assert torch.allclose(intended.bias.view(3, 4), vocab.mean(0).expand(3, 4))
    reference = KeywordBatchNorm(3, 4, vocab, "reference").bn  # feature (k, d) gets dim (d*K + k) mod D
    assert reference.bias.view(3, 4)[1, 1].item() == pytest.approx(vocab.mean(0)[(1 * 3 + 1) % 4].item())


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(tmp_path, family):
    model = make(family).eval()
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", tiny_speech_encoder(), tiny_clip()).eval()
    batch = collate_features([ToyFeatures()[i] for i in range(4)])
    a, b = model(batch)["speech_embeds"], loaded(batch)["speech_embeds"]
    assert torch.allclose(a, b, atol=1e-6)
    saved = torch.load(tmp_path / "m.pt", weights_only=False)["state"]
    assert not any(k.startswith("clip.") for k in saved)  # no frozen or duplicated CLIP weights (pitfall 18)


# ---- trainable parameter counts (§8.2): by formula, and counted on built models ----

def linear(d_in, d_out):
    return d_in * d_out + d_out


def attention_block(d):  # MHA (in and out projections with biases) + LayerNorm
    return linear(d, 3 * d) + linear(d, d) + 2 * d


def transformer_block(d, ffn):  # post-LN layer (attention, LN, FFN, LN) + the final LayerNorm
    return attention_block(d) + linear(d, ffn) + linear(ffn, d) + 2 * d + 2 * d


def cif_weights(d, layers=1, width=3):  # Conv1d(d, d, width) per layer, then Linear(d, 1)
    return layers * (d * d * width + d) + linear(d, 1)


def plus_params(family, states, d_a, d_t, mlp=False, parallel_mlp=False, block=None, cif=(1, 3),
                temperature=True, keywords=8):
    """Layer weights + temperature + the SpeechCLIP+ branch (§5.3-§5.5); BN running statistics are buffers."""
    kw_proj = linear(d_a, d_a) + linear(d_a, d_t) if mlp else linear(d_a, d_t)
    par_proj = linear(d_a, d_a) + linear(d_a, d_t) if parallel_mlp else linear(d_a, d_t)
    block = block or attention_block(d_a)
    n = states + int(temperature)
    if family == "cascaded_plus":
        return n + block + cif_weights(d_a, *cif) + kw_proj + 2 * d_t
    if family == "hybrid":
        return n + (1 + keywords) * d_a + block + par_proj + kw_proj + 2 * keywords * d_t
    return n + d_a + block + par_proj + cif_weights(d_a, *cif) + kw_proj + 2 * d_t


COCO_HYBRID = {"model.shared_block": "transformer", "model.temperature_trainable": False,
               "model.parallel_projection": "linear"}
PLUS_COUNTS = [  # (preset, family, overrides, formula arguments, §8.2)
    ("base", "cascaded_plus", {}, dict(states=13, d_a=768, d_t=512), 4_529_679),
    ("base", "hybrid", {}, dict(states=13, d_a=768, d_t=512), 3_166_478),
    ("base", "hybrid_plus", {}, dict(states=13, d_a=768, d_t=512), 4_924_175),
    ("large", "cascaded_plus", {}, dict(states=25, d_a=1024, d_t=768, mlp=True), 9_186_587),
    ("large", "cascaded_plus", {"model.cif_conv_layers": 2, "model.cif_conv_width": 5},  # Large COCO
     dict(states=25, d_a=1024, d_t=768, mlp=True, cif=(2, 5)), 16_527_643),
    ("large", "hybrid", {}, dict(states=25, d_a=1024, d_t=768, mlp=True, parallel_mlp=True), 7_895_578),
    ("large", "hybrid", COCO_HYBRID, dict(states=25, d_a=1024, d_t=768, mlp=True, temperature=False,
                                          block=transformer_block(1024, 4096)), 15_243_801),
    ("large", "hybrid_plus", {}, dict(states=25, d_a=1024, d_t=768, mlp=True), 9_974_811),
]


class StubSpeech(torch.nn.Module):
    """What SpeechCLIP reads from a frozen speech encoder to build its branch: width and number of states."""

    def __init__(self, hidden_size, num_hidden_states):
        super().__init__()
        self.hidden_size, self.num_hidden_states = hidden_size, num_hidden_states


class StubClip(torch.nn.Module):
    """What SpeechCLIP reads from a frozen CLIP to build its branch: widths and the subword table."""

    def __init__(self, width, vocab=50):
        super().__init__()
        self.token_dim = self.embed_dim = width
        self.context_length = 77
        self.vocab_embeds = torch.randn(vocab, width)


@pytest.mark.parametrize("preset, family, overrides, formula, expected", PLUS_COUNTS,
                         ids=[f"{p}-{f}-{i}" for i, (p, f, *_) in enumerate(PLUS_COUNTS)])
def test_speechclip_plus_parameter_counts_by_formula_and_built(preset, family, overrides, formula, expected):
    assert plus_params(family, **formula) == expected
    cfg = load_config(preset, family, overrides)
    speech = StubSpeech(formula["d_a"], formula["states"])
    model = build_model(cfg, speech, StubClip(formula["d_t"]))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.fixture(scope="module")
def base_backbones():
    return load_backbones(load_config("base"), random_init=True)


@pytest.mark.parametrize("family, expected", [("parallel", 7_483_917), ("cascaded", 2_771_981),
                                              ("cascaded_plus", 4_529_679), ("hybrid", 3_166_478),
                                              ("hybrid_plus", 4_924_175)])
def test_base_trainable_parameter_counts_match_the_paper(base_backbones, family, expected):
    model = build_model(load_config("base", family), *base_backbones, vocab_captions=CAPTIONS)
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


def test_branch_pool_averages_frames_before_the_parallel_branch():
    """model.branch_pool=k sees what a k-times coarser encoder would give, and padding never leaks into it."""
    from speechclip.speech_encoder import pool_frames
    pooled_cfg = tiny_config("parallel")
    pooled_cfg.model.branch_pool = 2
    pooled = build_model(pooled_cfg, tiny_speech_encoder(), tiny_clip()).eval()
    plain = build_model(tiny_config("parallel"), tiny_speech_encoder(), tiny_clip()).eval()
    plain.load_state_dict(pooled.state_dict())
    hidden, lens = torch.randn(3, 2, 9, 32), torch.tensor([9, 5])  # (L+1, B, T, D_a) of the tiny encoder
    coarse, coarse_lens = pool_frames(hidden, lens, 2)
    with torch.no_grad():
        a = pooled.encode_features(hidden, lens)["speech_embeds"]
        b = plain.encode_features(coarse, coarse_lens)["speech_embeds"]
        alone = pooled.encode_features(hidden[:, 1:, :5], lens[1:])["speech_embeds"]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[1], alone[0], atol=1e-5)


def test_query_only_blocks_equal_the_full_blocks_where_they_are_read():
    """The branches compute outputs only at the positions they read; those equal the full layer's outputs."""
    from speechclip.cascaded import AttentionAndNorm
    from speechclip.parallel import ParallelBranch, encoder_layer_queries, prepend_tokens
    from speechclip.plus import TransformerBlock
    torch.manual_seed(0)
    x, mask = torch.randn(3, 12, 16), torch.zeros(3, 12, dtype=torch.bool)
    mask[1, 9:], mask[2, 5:] = True, True
    block = AttentionAndNorm(16, heads=2).eval()
    full, w_full = block(x, mask, need_weights=True)
    part, w_part = block(x, mask, need_weights=True, queries=4)
    assert torch.allclose(full[:, :4], part, atol=1e-5) and torch.allclose(w_full[:, :4], w_part, atol=1e-6)
    shared = TransformerBlock(16, heads=2).eval()
    assert torch.allclose(shared(x, mask)[0][:, :3], shared(x, mask, queries=3)[0], atol=1e-5)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 64, 0.1, activation="gelu", batch_first=True).eval()
    assert torch.allclose(layer(x, src_key_padding_mask=mask)[:, :2], encoder_layer_queries(layer, x, mask, 2),
                          atol=1e-5)
    branch = ParallelBranch(16, 8, heads=2, layers=3).eval()
    with torch.no_grad():
        y, m = prepend_tokens(branch.cls, x, mask)
        reference = branch.final_norm(branch.transformer(y, src_key_padding_mask=m))[:, 0]
        expected = torch.nn.functional.normalize(branch.proj(reference), dim=-1)
        assert torch.allclose(branch(x, mask)["parallel_embeds"], expected, atol=1e-5)


def test_feature_masking_only_while_training_in_spans_of_zeros():
    from types import SimpleNamespace

    from speechclip.model import mask_features, span_mask_1d
    torch.manual_seed(0)
    spans = span_mask_1d(4000, 40, 0.05, 3, "cpu")
    assert abs(spans.float().mean().item() - (1 - 0.95 ** 3)) < 0.01  # a frame is masked if a span covers it
    starts = spans & ~torch.nn.functional.pad(spans, (1, 0))[:, :-1]
    lengths = spans.sum().item() / starts.sum().item()
    assert 3 <= lengths < 3.5  # spans of three, a few merged
    x = torch.randn(8, 30, 16)
    cfg = SimpleNamespace(feature_mask_time_prob=0.1, feature_mask_time_span=2, feature_mask_channel_prob=0.0,
                          feature_mask_channel_span=4)
    y = mask_features(x, cfg)
    zero_frames = (y == 0).all(-1)
    assert zero_frames.any() and torch.equal(y[~zero_frames], x[~zero_frames])
    cfg.feature_mask_time_prob, cfg.feature_mask_channel_prob = 0.0, 0.1
    zero_channels = (mask_features(x, cfg) == 0).all(1)
    assert zero_channels.any() and not (mask_features(x, cfg) == 0).all(-1).any()
    # in the model: features masked in training mode, untouched in eval mode
    model = build_model(tiny_config("parallel", **{"model.feature_mask_time_prob": 0.5,
                                                   "model.feature_mask_channel_prob": 0.2}),
                        tiny_speech_encoder(), tiny_clip())
    batch = collate_features([ToyFeatures()[i] for i in range(4)])
    model.eval()
    a = model.encode_features(batch["hidden_states"], batch["feat_lens"])["speech_embeds"]
    b = model.encode_features(batch["hidden_states"], batch["feat_lens"])["speech_embeds"]
    assert torch.equal(a, b)
    model.train()
    model.parallel.eval()  # no dropout: only the masking differs between the two passes
    c = model.encode_features(batch["hidden_states"], batch["feat_lens"])["speech_embeds"]
    assert not torch.allclose(a, c)

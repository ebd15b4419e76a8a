"""Unit tests: contrastive loss, VQ, recall and keyword metrics, config."""
import math

import pytest
import torch
import torch.nn.functional as F

from speechclip.config import load_config
from speechclip.losses import ContrastiveLoss, masked_contrastive_loss
from speechclip.metrics import chance_recall, keyword_hit_rate, mutual_retrieval, paired_retrieval, recall_at_k
from speechclip.vq import CosineVectorQuantizer


def naive_loss(a, v, ids, scale):
    """Loop version of §2.1, written independently of the package."""
    B, total_a, total_v = len(a), 0.0, 0.0
    for i in range(B):
        terms = [scale * a[i] @ v[j] for j in range(B) if j == i or ids[i] != ids[j]]
        total_a += -scale * a[i] @ v[i] + torch.logsumexp(torch.stack(terms), 0)
        terms = [scale * a[j] @ v[i] for j in range(B) if j == i or ids[i] != ids[j]]
        total_v += -scale * a[i] @ v[i] + torch.logsumexp(torch.stack(terms), 0)
    return (total_a / B + total_v / B) / 2


def test_loss_matches_loop_version_with_same_image_masking():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(7, 5, generator=g), dim=-1)
    v = F.normalize(torch.randn(7, 5, generator=g), dim=-1)
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    got = masked_contrastive_loss(a, v, ids, torch.tensor(1 / 0.07))
    assert torch.allclose(got, naive_loss(a, v, ids, 1 / 0.07), atol=1e-5)


def test_loss_is_symmetric_in_speech_and_image():
    a = F.normalize(torch.randn(6, 4), dim=-1)
    v = F.normalize(torch.randn(6, 4), dim=-1)
    ids = torch.arange(6)
    scale = torch.tensor(10.0)
    assert torch.allclose(masked_contrastive_loss(a, v, ids, scale), masked_contrastive_loss(v, a, ids, scale))


def test_loss_of_perfect_alignment_is_small_and_random_is_near_log_b():
    e = F.normalize(torch.randn(32, 64), dim=-1)
    ids = torch.arange(32)
    assert masked_contrastive_loss(e, e, ids, torch.tensor(100.0)) < 1e-3
    rand = masked_contrastive_loss(e, F.normalize(torch.randn(32, 64), dim=-1), ids, torch.tensor(1.0))
    assert abs(rand.item() - math.log(32)) < 0.5


def test_temperature_trainable_or_buffer_and_no_batch_buffers():
    fixed, learn = ContrastiveLoss(0.07, False), ContrastiveLoss(0.07, True)
    assert abs(fixed.logit_scale.item() - 1 / 0.07) < 1e-4
    assert [n for n, _ in learn.named_parameters()] == ["log_scale"]
    assert all(t.numel() == 1 for t in fixed.state_dict().values())  # nothing sized by the batch (pitfall 7)


def test_vq_forward_is_nearest_codeword_and_gradient_flows():
    codebook = torch.randn(50, 8)
    keywords = torch.randn(3, 4, 8, requires_grad=True)
    vq = CosineVectorQuantizer(0.1).train()
    out = vq(keywords, codebook, masked_positions=(0, 2))
    cos = F.normalize(keywords, dim=-1) @ F.normalize(codebook, dim=-1).t()
    cos[..., [0, 2]] = -2
    assert torch.equal(out["keyword_ids"], cos.argmax(-1))
    assert torch.allclose(out["keyword_embeds"], codebook[cos.argmax(-1)], atol=1e-5)
    out["keyword_embeds"].sum().backward()
    assert keywords.grad is not None and keywords.grad.abs().sum() > 0


def test_vq_never_picks_masked_special_tokens():
    codebook = torch.randn(10, 4)
    keywords = codebook[[0, 2, 3]][None]  # exactly the special rows
    out = CosineVectorQuantizer().eval()(keywords, codebook, masked_positions=(0, 2, 3))
    assert not set(out["keyword_ids"].flatten().tolist()) & {0, 2, 3}


def test_recall_any_caption_counts_and_chance():
    speech = torch.eye(4)[[2, 0, 3, 1]]  # only the second caption of each image matches it
    images = torch.eye(4)[[0, 0, 1, 1]]  # utterances 0,1 of image 7; 2,3 of image 9
    ids = torch.tensor([7, 7, 9, 9])
    m = mutual_retrieval(speech, images, ids)
    assert m["image2speech_R@1"] == 100.0
    assert chance_recall(500)["R@1"] == pytest.approx(0.2)
    assert chance_recall(10, 2)["R@1"] == pytest.approx(20.0)


def test_recall_at_k_ranks():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    r = recall_at_k(scores, torch.tensor([2, 2]), ks=(1, 2, 3))
    assert r == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}
    p = paired_retrieval(torch.eye(3), torch.eye(3))
    assert p["speech2text_R@1"] == 100.0 and p["text2speech_R@1"] == 100.0


def test_recall_at_k_counts_by_hand_in_both_directions():
    sim = torch.tensor([[0.9, 0.1],    # caption 0 of image 0: its image ranks first
                        [0.95, 0.2],   # caption 1 of image 1: second
                        [0.3, 0.6]])   # caption 2 of image 1: first
    t2i = recall_at_k(sim, torch.tensor([0, 1, 1]), ks=(1, 2))
    assert t2i == pytest.approx({"R@1": 200 / 3, "R@2": 100.0})
    # image 0 ranks caption 1 (image 1's) above its own caption 0; image 1 ranks its caption 2 first
    i2t = recall_at_k(sim.T, [{0}, {1, 2}], ks=(1, 2))
    assert i2t == {"R@1": 50.0, "R@2": 100.0}


def test_keyword_hit_rate_per_slot():
    neighbours = torch.tensor([[[1, 2], [5, 6]], [[9, 9], [3, 4]]])  # (B=2, K=2, n=2)
    rates = keyword_hit_rate(neighbours, [{2, 7}, {4}])
    assert rates["kw_1"] == 50.0 and rates["kw_2"] == 50.0 and rates["kw_avg"] == 50.0


def test_keyword_hit_rate_over_fired_cif_keywords_only():
    ids = torch.tensor([[[5], [6], [0]], [[7], [9], [9]]])  # (B, K, 1); utterance 0 fired 2, utterance 1 fired 3
    rates = keyword_hit_rate(ids, [{5}, {9}], lengths=torch.tensor([2, 3]))
    assert rates == {"kw_avg": pytest.approx(100 * 3 / 5)}  # hits: 5; 9, 9 out of 5 fired keywords


def test_cif_batches_of_different_lengths_concatenate():
    from speechclip.evaluation import _cat_padded

    out = _cat_padded([torch.ones(2, 3, 4), torch.ones(1, 5, 4)])
    assert out.shape == (3, 5, 4) and out[:2, 3:].abs().sum() == 0
    assert _cat_padded([torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long)], -1)[0, 2] == -1


def test_config_presets_and_unknown_keys():
    cfg = load_config("large", "cascaded", {"train.max_steps": 3})
    assert cfg.clip.name == "ViT-L-14" and cfg.model.temperature_trainable and cfg.train.max_steps == 3
    assert load_config("base").train.lr == 1e-4
    with pytest.raises(KeyError, match="unknown config key 'train.lrr'"):
        load_config("base", overrides={"train.lrr": 1})
    with pytest.raises(KeyError):
        load_config("nope")


def test_keyword_chance_rate_matches_simulation():
    import random

    from speechclip.metrics import keyword_chance_rate

    refs = [{1, 2, 3}, {4}, {5, 6, 7, 8, 9, 10}]
    rng, trials, hits = random.Random(0), 4000, 0
    for _ in range(trials):
        for ref in refs:
            hits += bool(ref & set(rng.sample(range(40), 5)))
    simulated = 100 * hits / (trials * len(refs))
    assert abs(keyword_chance_rate(refs, 40, 5) - simulated) < 1.5


def test_keyword_captions_keep_content_words_in_order():
    from speechclip.probes import keyword_captions
    assert keyword_captions(["a big red circle to the left of a small blue square",
                             "there is a tiny green star at the top"]) == [
        "big red circle left small blue square", "tiny green star top"]


def test_top1_keyword_chance_is_far_below_top5():
    from speechclip.metrics import keyword_chance_rate
    refs = [set(range(6))] * 10
    top5, top1 = keyword_chance_rate(refs, 70, 5), keyword_chance_rate(refs, 70, 1)
    assert top1 == pytest.approx(100 * 6 / 70) and top5 > 3.5 * top1


def test_keyword_prior_is_the_best_constant_slot():
    from speechclip.metrics import keyword_hits, keyword_prior_rate
    # word 7 is in three of four captions: a slot that always says 7 hits 75%, far above uniform chance
    refs = [{7, 1}, {7, 2}, {7, 3}, {4, 5}]
    assert keyword_prior_rate(refs, 1) == pytest.approx(75.0)
    assert keyword_prior_rate(refs, 5) == pytest.approx(100.0)
    # the same number through the hit-rate code path, for the constant slot, and no single constant does better
    constant = torch.full((4, 1, 1), 7)
    assert 100 * keyword_hits(constant, refs).float().mean().item() == pytest.approx(75.0)
    best = max(sum(w in r for r in refs) for w in range(10)) / len(refs) * 100
    assert keyword_prior_rate(refs, 1) == pytest.approx(best)

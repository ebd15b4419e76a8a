"""CIF (§5.1, §5.2): how many tokens fire, what they integrate, padding, the quantity loss, gradients, the cap."""
import math

import pytest
import torch

from speechclip.cif import CIF, caption_targets, fire_weights, frame_targets, quantity_loss, scale_to_target
from tiny import tiny_clip


def random_alpha(batch=6, frames=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(batch, frames, generator=g) * 0.6
    lens = torch.randint(5, frames + 1, (batch,), generator=g)
    return alpha.masked_fill(torch.arange(frames)[None] >= lens[:, None], 0.0), lens


def test_hand_example_splits_the_crossing_frame():
    alpha = torch.tensor([[0.4, 0.4, 0.4, 0.4, 0.4]])
    weights, lens, fire_frames = fire_weights(alpha)
    expected = torch.tensor([[0.4, 0.4, 0.2, 0.0, 0.0], [0.0, 0.0, 0.2, 0.4, 0.4]])
    assert lens.tolist() == [2] and fire_frames.tolist() == [[2, 4]]
    assert torch.allclose(weights[0].float(), expected, atol=1e-6)


def test_training_fires_floor_of_the_sum_and_drops_the_tail():
    alpha, _ = random_alpha()
    weights, lens, _ = fire_weights(alpha, tail_threshold=None)
    expected = torch.floor(alpha.double().sum(1)).clamp(min=1).long()
    assert torch.equal(lens, expected)
    fired = torch.arange(weights.shape[1])[None] < lens[:, None]
    assert torch.allclose(weights.sum(-1)[fired], torch.ones(int(fired.sum()), dtype=torch.float64))
    assert (weights.sum(-1)[~fired] == 0).all()


def test_inference_emits_a_tail_of_at_least_half_rescaled_to_one():
    alpha = torch.tensor([[0.6, 0.6, 0.3, 0.0], [0.6, 0.6, 0.1, 0.0], [0.2, 0.1, 0.0, 0.0]])
    weights, lens, fire_frames = fire_weights(alpha, tail_threshold=0.5)
    assert lens.tolist() == [2, 1, 1]  # remainders 0.5 (emitted), 0.3 (dropped); 0.3 in all -> at least 1
    assert torch.allclose(weights.sum(-1)[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(weights[0, 1].float(), torch.tensor([0.0, 0.2, 0.3, 0.0]) / 0.5)
    assert torch.allclose(weights[2, 0].float(), torch.tensor([2 / 3, 1 / 3, 0.0, 0.0]))
    assert fire_frames.tolist() == [[1, 2], [1, -1], [1, -1]]


def test_every_frame_gives_its_weight_to_the_tokens_until_the_last_firing():
    alpha, _ = random_alpha(seed=1)
    weights, lens, fire_frames = fire_weights(alpha)
    given = weights.sum(1)  # (B, T): weight each frame gave to kept tokens
    assert (given <= alpha.double() + 1e-9).all()
    for b in range(len(alpha)):
        last = int(fire_frames[b, lens[b] - 1])
        if alpha[b].sum() >= 1:
            assert torch.allclose(given[b, :last], alpha[b, :last].double())
            assert math.isclose(float(given[b].sum()), int(lens[b]), rel_tol=1e-9)


def test_scaled_weights_fire_exactly_the_target_even_above_one_per_frame():
    alpha, _ = random_alpha(seed=2)
    target = torch.tensor([3, 7, 1, 12, 30, 5])  # 30 over at most 40 frames: several tokens in one frame
    _, lens, _ = fire_weights(scale_to_target(alpha, target))
    assert torch.equal(lens, target)


def test_token_cap():
    alpha = torch.ones(2, 100)
    for tail in (None, 0.5):
        weights, lens, _ = fire_weights(alpha, max_tokens=75, tail_threshold=tail)
        assert lens.tolist() == [75, 75] and weights.shape == (2, 75, 100)
    assert fire_weights(alpha, max_tokens=3)[1].tolist() == [3, 3]


def test_padding_invariance_alone_and_in_a_batch():
    torch.manual_seed(0)
    cif = CIF(16, conv_layers=2, conv_width=5, dropout=0.0).eval()
    x = torch.randn(3, 30, 16)
    lens = torch.tensor([30, 17, 9])
    mask = torch.arange(30)[None] >= lens[:, None]
    x = x.masked_fill(mask[..., None], 123.0)  # garbage on padding must not leak into alpha or tokens
    batch = cif(x, mask)
    for b, n in enumerate(lens.tolist()):
        alone = cif(x[b:b + 1, :n], torch.zeros(1, n, dtype=torch.bool))
        k = int(alone["token_lens"][0])
        assert int(batch["token_lens"][b]) == k
        assert torch.allclose(batch["tokens"][b, :k], alone["tokens"][0], atol=1e-5)
        assert torch.equal(batch["fire_frames"][b, :k], alone["fire_frames"][0])
        assert (batch["tokens"][b, k:] == 0).all() and batch["token_mask"][b, k:].all()


def test_quantity_loss_and_targets_by_hand():
    assert quantity_loss(torch.tensor([3.0, 5.5]), torch.tensor([4, 5])).item() == pytest.approx(0.75)
    # 50 Hz frames: 100 / 20 = 5, 30 / 20 = 1.5 -> 2, 9 / 20 -> 0 -> at least 1; pooled 25 frames x 4 = 100 -> 5
    assert frame_targets(torch.tensor([100, 30, 9])).tolist() == [5, 2, 1]
    assert frame_targets(torch.tensor([25]), frame_pool=4).tolist() == [5]
    clip = tiny_clip()
    assert caption_targets(clip, ["a big red circle", "two black stars"]).tolist() == [4, 3]
    assert caption_targets(clip, ["a big red circle", "two black stars"], content_only=True).tolist() == [3, 3]


def test_gradients_reach_the_weight_convolution_through_tokens_and_quantity():
    torch.manual_seed(0)
    cif = CIF(8, dropout=0.0).train()
    x, mask = torch.randn(2, 12, 8), torch.zeros(2, 12, dtype=torch.bool)
    cif(x, mask)["tokens"].pow(2).sum().backward()  # the firing weights alone
    assert cif.convs[0].weight.grad.abs().sum() > 0
    cif.zero_grad()
    out = cif(x, mask, target=torch.tensor([2, 3]))
    quantity_loss(out["quantity"], torch.tensor([2, 3])).backward()
    assert cif.convs[0].weight.grad.abs().sum() > 0 and out["token_lens"].tolist() == [2, 3]


def test_weights_are_in_unit_range_and_zero_on_padding():
    cif = CIF(8).eval()
    mask = torch.arange(10)[None] >= torch.tensor([[10], [4]])
    alpha = cif.weights(torch.randn(2, 10, 8), mask)
    assert ((alpha >= 0) & (alpha <= 1)).all() and (alpha[mask] == 0).all()
    with pytest.raises(ValueError, match="odd"):
        CIF(8, conv_width=4)

"""GPU tier: mixed-precision training of every family on CUDA (skipped where there is no GPU, as in CI)."""
import pytest
import torch

from speechclip.config import FAMILIES
from speechclip.features import collate_features
from speechclip.model import build_model, load_model
from speechclip.train import fit
from tiny import ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("family", FAMILIES)
def test_amp_fit_on_cuda(tmp_path, family):
    cfg = tiny_config(family, **{"train.max_steps": 20})
    model = build_model(cfg, tiny_speech_encoder(), tiny_clip())
    state = fit(model, ToyFeatures(), ToyFeatures(seed=1), cfg, tmp_path, collate_features, progress=False)
    assert next(model.parameters()).is_cuda and state.step == 20
    best = load_model(tmp_path / "best.pt", tiny_speech_encoder(), tiny_clip())
    assert all(torch.isfinite(v.float()).all() for v in best.trainable_state_dict().values())


def test_encode_speech_on_cuda_matches_cpu():
    model = build_model(tiny_config("parallel"), tiny_speech_encoder(), tiny_clip()).eval()
    wavs, lens = torch.randn(2, 16000), torch.tensor([16000, 11000])
    cpu = model.encode_speech(wavs, lens)["speech_embeds"]
    gpu = model.cuda().encode_speech(wavs.cuda(), lens.cuda())["speech_embeds"].cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3)

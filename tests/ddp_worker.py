"""Run by test_train.py under torchrun (gloo, CPU): fit with DDP and dump each rank's final weights."""
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from tiny import ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder  # noqa: E402

from speechclip.features import collate_features  # noqa: E402
from speechclip.model import build_model  # noqa: E402
from speechclip.train import fit  # noqa: E402

out_dir = sys.argv[1]
dist.init_process_group("gloo")
rank = dist.get_rank()
cfg = tiny_config("parallel", **{"train.max_steps": 6})
model = build_model(cfg, tiny_speech_encoder(), tiny_clip())  # same seeds: identical start on every rank
state = fit(model, ToyFeatures(), ToyFeatures(seed=1), cfg, out_dir, collate_features, progress=False)
torch.save({k: v.cpu() for k, v in model.trainable_state_dict().items()}, f"{out_dir}/rank{rank}.pt")
dist.destroy_process_group()

"""Tiny real backbones (random weights, real classes) and a learnable toy feature corpus for model tests."""
import torch
from transformers import HubertConfig, HubertModel

from speechclip.clip_encoder import ClipEncoder
from speechclip.config import PocketClipConfig, load_config
from speechclip.speech_encoder import SpeechEncoder

CAPTIONS = ["a big red circle", "a small blue square", "a green star above a red circle",
            "a yellow triangle left of a blue square", "two black stars"]


def tiny_speech_encoder(seed: int = 0) -> SpeechEncoder:
    torch.manual_seed(seed)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=[16] * 7, feat_extract_norm="layer", num_conv_pos_embeddings=8,
                       num_conv_pos_embedding_groups=4)
    return SpeechEncoder(HubertModel(cfg).eval())


def tiny_clip(seed: int = 0) -> ClipEncoder:
    import open_clip

    from speechclip.pocket_clip import build_pocket_clip

    torch.manual_seed(seed)
    cfg = PocketClipConfig(embed_dim=32, image_size=32, patch_size=16, vision_width=32, vision_layers=1,
                           text_width=32, text_layers=1, heads=2)
    model, preprocess = build_pocket_clip(cfg)
    clip = ClipEncoder(model, preprocess, open_clip.get_tokenizer("ViT-B-32"))
    clip.set_vocab(CAPTIONS)
    return clip


def tiny_config(family: str = "parallel", **overrides):
    base = {"model.parallel_heads": 2, "model.dropout": 0.0, "data.batch_size": 8, "data.eval_batch_size": 8,
            "train.warmup_steps": 2, "train.max_steps": 12, "train.lr": 3e-3, "train.log_every": 1}
    return load_config("smoke", family, {**base, **overrides})


class ToyFeatures(torch.utils.data.Dataset):
    """Hidden states whose mean carries the image identity, so a model can learn retrieval from them."""

    def __init__(self, n_images=8, per_image=3, states=3, dim=32, embed_dim=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.codes = torch.randn(n_images, dim, generator=g)
        self.image_embeds = torch.nn.functional.normalize(torch.randn(n_images, embed_dim, generator=g), dim=-1)
        self.items = []
        for i in range(n_images * per_image):
            img, T = i % n_images, 6 + i % 5
            hidden = self.codes[img] + 0.3 * torch.randn(T, states, dim, generator=g)
            self.items.append({"hidden": hidden, "image_embed": self.image_embeds[img], "image_id": img,
                               "text": CAPTIONS[img % len(CAPTIONS)], "uid": f"u{i}"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def lengths(self):
        return [len(x["hidden"]) for x in self.items]

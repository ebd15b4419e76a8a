"""speechclip: a notebook-first reproduction of SpeechCLIP and SpeechCLIP+ (see README.md).

The CLIP-shaped public surface: load_config, build_model, model.encode_speech / encode_image / encode_text /
keywords / logit_scale, save and load_model. Notebooks import from here (plus the module a notebook teaches).
"""
from speechclip.config import Config, load_config
from speechclip.model import SpeechCLIP, build_model, load_backbones, load_model

__all__ = ["Config", "SpeechCLIP", "build_model", "load_backbones", "load_config", "load_model"]

"""speechclip: a notebook-first reproduction of SpeechCLIP and SpeechCLIP+ (see README.md)."""
from speechclip.config import Config, load_config

__all__ = ["Config", "load_config"]

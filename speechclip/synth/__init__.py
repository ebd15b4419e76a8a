"""Synthetic spoken captions: shape scenes, template captions and espeak-ng speech in the Flickr8k layout.

Introduced in notebooks/00_setup_and_data.ipynb; data_scripts/make_synthetic_corpus.py is the command line.
"""
from speechclip.synth.captions import make_captions
from speechclip.synth.corpus import CORPUS_PRESETS, ensure_corpus, has_corpus, make_corpus, synthetic_metadata
from speechclip.synth.scenes import Scene, SceneObject, render, scene_difference
from speechclip.synth.tts import SPEAKERS, Speaker, Utterance, synthesize

__all__ = ["CORPUS_PRESETS", "SPEAKERS", "Scene", "SceneObject", "Speaker", "Utterance", "ensure_corpus",
           "has_corpus", "make_captions", "make_corpus", "render", "scene_difference", "synthesize",
           "synthetic_metadata"]

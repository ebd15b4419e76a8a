"""Settings that cannot pass silently: value types, allowed strings, ranges, nesting, and the CLI's --set parsing."""
import pytest

from speechclip.config import FAMILIES, PRESETS, config_from_dict, load_config
from speechclip.pipeline import main, parse_overrides


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_and_family_validates(preset):
    for family in FAMILIES:
        assert load_config(preset, family).model.family == family


@pytest.mark.parametrize("override, error, text", [
    ({"train.lr": "1e-3"}, TypeError, r"train.lr='1e-3' must be of type float, got str"),
    ({"data.batch_size": 8.5}, TypeError, "data.batch_size=8.5 must be of type int"),
    ({"train.max_steps": True}, TypeError, "train.max_steps=True must be of type int, got bool"),
    ({"model.temperature_trainable": "yes"}, TypeError, "must be of type bool"),
    ({"pocket_hubert.conv_dim": ["a", "b"]}, TypeError, "conv_dim.*list of integers"),
    ({"train.precision": "fp8"}, ValueError, r"train.precision='fp8' is not one of \('auto', 'fp32'"),
    ({"data.on_error": "ignore"}, ValueError, "data.on_error='ignore' is not one of"),
    ({"data.format": "librispeech"}, ValueError, "data.format='librispeech' is not one of"),
    ({"model.family": "hybridd"}, ValueError, "model.family='hybridd' is not one of"),
    ({"model.family": "cascaded"}, ValueError, "disagrees with family='parallel'.*load_config\\(preset, 'cascaded'\\)"),
    ({"data.batch_size": 0}, ValueError, "data.batch_size=0 must be >= 1"),
    ({"train.log_every": 0}, ValueError, "train.log_every=0 must be >= 1"),
    ({"train.lr": -1e-4}, ValueError, "train.lr=-0.0001 must be > 0"),
    ({"train.lr": {"value": 1e-3}}, KeyError, "'train.lr' is a value, not a section: 'train.lr.value' goes one level"),
    ({"train.lr.value": 1e-3}, KeyError, "one level too deep"),
])
def test_bad_values_are_refused_with_the_key(override, error, text):
    with pytest.raises(error, match=text):
        load_config("smoke", "parallel", override)


def test_saved_configs_are_validated_too():
    d = load_config("smoke").to_dict()
    d["train"]["precision"] = "half"
    with pytest.raises(ValueError, match="train.precision='half'"):
        config_from_dict(d)


def test_set_parses_strings_numbers_and_booleans():
    got = parse_overrides(["data.root=tmp/x", "train.precision=fp32", "train.lr=1e-3", "train.max_steps=200",
                           "model.temperature_trainable=True", "pocket_hubert.conv_dim=[8,8]", "clip.pretrained="])
    assert got == {"data.root": "tmp/x", "train.precision": "fp32", "train.lr": 1e-3, "train.max_steps": 200,
                   "model.temperature_trainable": True, "pocket_hubert.conv_dim": [8, 8], "clip.pretrained": ""}
    cfg = load_config("smoke", "parallel", got)
    assert cfg.data.root == "tmp/x" and cfg.train.precision == "fp32" and cfg.pocket_hubert.conv_dim == (8, 8)
    with pytest.raises(ValueError, match="train.lr takes a float, and 'fast' is not one"):
        parse_overrides(["train.lr=fast"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["train.lr"])


def test_cli_names_an_unknown_key_before_any_work(tmp_path):
    with pytest.raises(KeyError, match="unknown config key 'train.lrr'"):
        main(["--preset", "smoke", "--out", str(tmp_path), "--set", "train.lrr=1", "data.root=tmp/x"])
    with pytest.raises(ValueError, match="train.precision='fp64' is not one of"):
        main(["--preset", "smoke", "--out", str(tmp_path), "--set", "train.precision=fp64"])

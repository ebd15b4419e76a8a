"""Settings that cannot pass silently: value types, allowed strings, ranges, nesting, and the CLI's --set parsing."""
import pytest

from speechclip.config import FAMILIES, PRESETS, config_from_dict, load_config
from speechclip.pipeline import main, parse_overrides


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_and_family_validates(preset):
    for family in FAMILIES:
        assert load_config(preset, family).model.family == family


# What each size and family sets (§1.1, §1.2, §3, §4.6, §5.6): waveform normalisation, hidden-state LayerNorm,
# learnable temperature, attention heads of the keyword block, objective weights (cascaded, parallel, quantity),
# which embedding retrieval reads, keyword and parallel projections, batch size.
COLUMNS = ("data.normalize_waveform", "speech.normalize_hiddenstates", "model.temperature_trainable",
           "model.cascaded_heads", "model.cascaded_weight", "model.parallel_weight", "model.quantity_weight",
           "model.retrieval_branch", "model.keyword_projection", "model.parallel_projection", "data.batch_size")
SPEECHCLIP_PLUS_BASE = {
    "cascaded_plus": (True, False, True, 1, 1.0, 1.0, 0.25, "auto", "linear", "linear", 256),
    "hybrid": (True, False, True, 1, 1.0, 1.0, 0.25, "cascaded", "linear", "linear", 256),
    "hybrid_plus": (True, False, True, 8, 1.0, 1.0, 0.25, "parallel", "linear", "linear", 256),
}
MATRIX = {
    "base": {"parallel": (False, False, False, 1, 1.0, 1.0, 0.25, "auto", "linear", "linear", 256),
             "cascaded": (False, False, False, 1, 1.0, 1.0, 0.25, "auto", "linear", "linear", 256),
             **SPEECHCLIP_PLUS_BASE},
    "large": {"parallel": (False, True, True, 1, 1.0, 1.0, 0.25, "auto", "linear", "linear", 256),
              "cascaded": (False, True, True, 1, 1.0, 1.0, 0.25, "auto", "linear", "linear", 256),
              "cascaded_plus": (False, False, True, 8, 1.0, 1.0, 0.25, "auto", "mlp", "linear", 128),
              "hybrid": (False, True, True, 1, 1.0, 1.0, 0.25, "cascaded", "mlp", "mlp", 256),
              "hybrid_plus": (False, False, True, 8, 1.5, 0.5, 0.25, "cascaded", "mlp", "linear", 128)},
}
for _preset, _batch in (("pocket", 64), ("smoke", 16)):  # Base architecture; the pocket HuBERT normalises itself
    MATRIX[_preset] = {f: (False, *row[1:-1], _batch) for f, row in MATRIX["base"].items()}
# the offline deviations in this matrix (config, docs/reference.md): the pocket cascaded model learns its
# temperature, and both pocket keyword families (cascaded, Cascaded+) attend with eight heads
MATRIX["pocket"]["cascaded"] = (False, False, True, 8, *MATRIX["pocket"]["cascaded"][4:])
MATRIX["pocket"]["cascaded_plus"] = (*MATRIX["pocket"]["cascaded_plus"][:3], 8, *MATRIX["pocket"]["cascaded_plus"][4:])


@pytest.mark.parametrize("preset, family", [(p, f) for p in sorted(PRESETS) for f in FAMILIES])
def test_every_preset_and_family_matches_the_reference(preset, family):
    assert set(MATRIX) == set(PRESETS)
    cfg = load_config(preset, family).to_dict()
    got = tuple(cfg[k.split(".")[0]][k.split(".")[1]] for k in COLUMNS)
    assert dict(zip(COLUMNS, got)) == dict(zip(COLUMNS, MATRIX[preset][family]))
    steps = {"base": 5000, "large": 5000, "pocket": cfg["train"]["max_steps"] // 10, "smoke": 3}[preset] \
        if family in ("cascaded_plus", "hybrid_plus") else 5000
    assert cfg["model"]["cif_scaling_steps"] == steps  # a tenth of the schedule, as 5,000 of 50,000
    # the pocket keyword families (cascaded, Cascaded+) train 1,500 steps, the others 1,000 (config comment)
    if preset == "pocket":
        assert cfg["train"]["max_steps"] == (1500 if family in ("cascaded", "cascaded_plus") else 1000)
    # the pocket parallel branch has three transformer layers on frames pooled twice, every other preset the
    # papers' one layer at the encoder's rate (config comment)
    pocket_parallel = (preset, family) == ("pocket", "parallel")
    assert cfg["model"]["parallel_layers"] == (3 if pocket_parallel else 1)
    assert cfg["model"]["branch_pool"] == (2 if pocket_parallel else 1)
    if preset == "pocket":  # and learns at 2e-3, the other pocket families at 1e-3 (config comment)
        assert cfg["train"]["lr"] == (2e-3 if pocket_parallel else 1e-3)


def test_retrieval_branch_must_exist_and_cif_width_be_odd():
    with pytest.raises(ValueError, match="family 'cascaded_plus' has no such embedding"):
        load_config("smoke", "cascaded_plus", {"model.retrieval_branch": "parallel"})
    with pytest.raises(ValueError, match="family 'parallel' has no such embedding"):
        load_config("smoke", "parallel", {"model.retrieval_branch": "cascaded"})
    with pytest.raises(ValueError, match="cif_conv_width=4 must be odd"):
        load_config("smoke", "cascaded_plus", {"model.cif_conv_width": 4})
    with pytest.raises(ValueError, match="quantity_target='words' is not one of"):
        load_config("smoke", "cascaded_plus", {"model.quantity_target": "words"})
    for family in ("cascaded", "cascaded_plus", "hybrid", "hybrid_plus"):
        with pytest.raises(ValueError, match="branch_pool=2 is for family 'parallel' only"):
            load_config("smoke", family, {"model.branch_pool": 2})


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
    ({"pocket_hubert.speed_perturb": [0.9, 1.1]}, TypeError, "speed_perturb.*list of integers"),
    ({"pocket_hubert.speed_perturb": [9, 11]}, ValueError, r"speed_perturb=\[9, 11\]: speeds in percent"),
    ({"pocket_hubert.speed_perturb": [100]}, ValueError, "other than 100"),
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


def test_waveform_normalisation_gets_its_own_feature_cache():
    from speechclip.pipeline import backbone_key

    base, plus = load_config("base", "parallel"), load_config("base", "cascaded_plus")
    assert backbone_key(base, "speech") != backbone_key(plus, "speech")  # the encoder sees other waveforms
    assert backbone_key(base, "clip") == backbone_key(plus, "clip")
    pocket = load_config("pocket", "parallel")
    assert backbone_key(pocket, "speech") == backbone_key(load_config("pocket", "hybrid_plus"), "speech")

"""Tests for ddim_keras.core.config: the example's defaults, presets, JSON, validation."""

import dataclasses
import json

import pytest
from conftest import TINY

from ddim_keras.core.config import PRESETS, DiffusionConfig, preset
from ddim_keras.core.errors import ConfigError, UsageError

# The keras.io DDIM example's hyperparameters, copied from its source.
EXAMPLE_HYPERPARAMETERS = dict(
    image_size=64,
    kid_image_size=75,
    kid_diffusion_steps=5,
    plot_diffusion_steps=20,
    min_signal_rate=0.02,
    max_signal_rate=0.95,
    embedding_dims=32,
    embedding_max_frequency=1000.0,
    widths=(32, 64, 96, 128),
    block_depth=2,
    batch_size=64,
    ema=0.999,
    learning_rate=1e-3,
    weight_decay=1e-4,
    dataset_repetitions=5,
    loss="mae",
)


# -- defaults and presets --------------------------------------------------------


def test_defaults_are_the_example_hyperparameters():
    config = DiffusionConfig()
    for name, value in EXAMPLE_HYPERPARAMETERS.items():
        assert getattr(config, name) == value, name
    assert isinstance(config.widths, tuple)
    assert config.kid is True
    assert config.schedule == "cosine"


def test_flowers_preset_is_the_default():
    assert preset("flowers") == DiffusionConfig()
    assert PRESETS["flowers"] == DiffusionConfig()


def test_celeba_preset():
    celeba = preset("celeba")
    assert celeba.dataset_repetitions == 1
    assert celeba.epochs == 20
    # Everything else is the example's.
    assert (
        celeba.replace(dataset_repetitions=5, epochs=DiffusionConfig().epochs) == DiffusionConfig()
    )


def test_shapes_preset_is_small():
    shapes = preset("shapes")
    default = DiffusionConfig()
    assert shapes.image_size < default.image_size
    assert len(shapes.widths) <= len(default.widths)
    assert max(shapes.widths) <= max(default.widths)
    assert shapes.epochs < default.epochs
    assert shapes.batch_size <= default.batch_size


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="nope") as info:
        preset("nope")
    for name in ("flowers", "celeba", "shapes"):
        assert name in str(info.value)


# -- JSON round trip ----------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        DiffusionConfig(),
        DiffusionConfig(**TINY),
        DiffusionConfig(loss="mse", schedule="linear", ema=0.5),
    ],
    ids=["default", "tiny", "changed"],
)
def test_json_round_trip(config):
    text = config.to_json()
    data = json.loads(text)
    assert data["widths"] == list(config.widths)  # plain JSON list
    again = DiffusionConfig.from_json(text)
    assert again == config
    assert isinstance(again.widths, tuple)
    assert hash(again) == hash(config)


def test_save_and_load_file(tmp_path):
    config = DiffusionConfig(**TINY).replace(learning_rate=3e-4, loss="mse")
    path = tmp_path / "config.json"
    config.save(path)
    assert not (tmp_path / "config.json.tmp").exists()
    assert DiffusionConfig.load(path) == config
    assert json.loads(path.read_text())["learning_rate"] == 3e-4


def test_load_partial_file_over_a_base(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"epochs": 3, "batch_size": 8}))
    config = DiffusionConfig.load(path, base="celeba")
    assert config == preset("celeba").replace(epochs=3, batch_size=8)


def test_load_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.json"):
        DiffusionConfig.load(tmp_path / "missing.json")


def test_load_invalid_json_is_a_config_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        DiffusionConfig.load(path)


def test_ints_are_accepted_for_float_fields():
    config = DiffusionConfig.from_json(json.dumps({"embedding_max_frequency": 500}))
    assert config.embedding_max_frequency == 500.0
    assert isinstance(config.embedding_max_frequency, float)


# -- validation ---------------------------------------------------------------------


def test_config_error_is_a_usage_error():
    assert issubclass(ConfigError, UsageError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "changes, field",
    [
        # 3 poolings with 4 widths: 60 is not divisible by 8.
        (dict(image_size=60), "image_size"),
        (dict(image_size=24, widths=(8, 16, 32, 64, 128)), "image_size"),
        (dict(min_signal_rate=0.0), "min_signal_rate"),
        (dict(min_signal_rate=-0.1), "min_signal_rate"),
        (dict(min_signal_rate=0.95, max_signal_rate=0.95), "min_signal_rate"),
        (dict(min_signal_rate=0.96), "min_signal_rate"),
        (dict(max_signal_rate=1.5), "max_signal_rate"),
        (dict(batch_size=1), "batch_size"),
        (dict(batch_size=0, kid=False), "batch_size"),
        (dict(widths=()), "widths"),
        (dict(widths=(32, 0)), "widths"),
        (dict(loss="huber"), "loss"),
        (dict(schedule="sigmoid"), "schedule"),
        (dict(ema=1.0), "ema"),
        (dict(embedding_dims=31), "embedding_dims"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(kid_image_size=64), "kid_image_size"),
        (dict(block_depth=0), "block_depth"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DiffusionConfig(**changes)
    # The same check applies to replace() and to JSON.
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DiffusionConfig().replace(**changes)
    data = DiffusionConfig().to_dict()
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DiffusionConfig.from_json(json.dumps(data))


def test_image_size_message_suggests_a_size():
    with pytest.raises(ConfigError) as info:
        DiffusionConfig(image_size=60)
    message = str(info.value)
    assert "8" in message and "56" in message


def test_batch_size_one_is_fine_without_kid():
    config = DiffusionConfig(batch_size=1, kid=False)
    assert config.batch_size == 1
    with pytest.raises(ConfigError, match="batch_size"):
        config.replace(kid=True)


def test_small_kid_image_size_is_fine_without_kid():
    assert DiffusionConfig(kid=False, kid_image_size=32).kid_image_size == 32


def test_image_size_follows_the_number_of_widths():
    # One width: no pooling, any size works; two widths: even sizes only.
    assert DiffusionConfig(image_size=17, widths=(8,), kid=False).image_size == 17
    assert DiffusionConfig(image_size=18, widths=(8, 16)).image_size == 18
    with pytest.raises(ConfigError, match="image_size"):
        DiffusionConfig(image_size=17, widths=(8, 16))


def test_unknown_keys_are_refused_by_name():
    data = DiffusionConfig().to_dict()
    data["learning_rat"] = 0.1
    data["zzz_unknown"] = 1
    with pytest.raises(ConfigError) as info:
        DiffusionConfig.from_dict(data)
    assert "learning_rat" in str(info.value)
    assert "zzz_unknown" in str(info.value)
    with pytest.raises(ConfigError, match="learning_rat"):
        DiffusionConfig.from_json(json.dumps(data))
    with pytest.raises(ConfigError, match="learning_rat"):
        DiffusionConfig().replace(learning_rat=0.1)


def test_unknown_keys_in_a_partial_file_are_refused(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"epocs": 3}))
    with pytest.raises(ConfigError, match="epocs"):
        DiffusionConfig.load(path, base="flowers")


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(image_size="64"), "image_size"),
        (dict(image_size=64.0), "image_size"),
        (dict(batch_size=True), "batch_size"),
        (dict(learning_rate="1e-3"), "learning_rate"),
        (dict(ema=None), "ema"),
        (dict(kid="yes"), "kid"),
        (dict(kid=1), "kid"),
        (dict(loss=1), "loss"),
        (dict(widths="32,64"), "widths"),
        (dict(widths=(32.0, 64.0)), "widths"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DiffusionConfig(**changes)


def test_string_image_size_from_json_is_refused():
    with pytest.raises(ConfigError, match="image_size") as info:
        DiffusionConfig.from_json(json.dumps({"image_size": "64"}))
    assert "'64'" in str(info.value)


def test_non_object_json_is_refused():
    with pytest.raises(ConfigError):
        DiffusionConfig.from_json("[1, 2, 3]")
    with pytest.raises(ConfigError):
        DiffusionConfig.from_json("{oops")


def test_config_is_frozen():
    config = DiffusionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.image_size = 32

"""One table of presets (utils.presets): a name means the same model in every chapter and command."""

import dataclasses

import pytest

from utils import presets, shakespeare, translation
from utils.models import GPTConfig, TransformerConfig
from utils.trainer import TrainConfig


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_a_model_preset_is_the_model_its_command_trains(name):
    model = GPTConfig.preset(name, vocab_size=65)
    trained, _ = shakespeare.configs(name, vocab_size=65)
    assert model == trained
    model = TransformerConfig.preset(name, src_vocab_size=4000, tgt_vocab_size=4000)
    trained, _ = translation.configs(name, vocab_size=4000)
    assert model == trained
    assert shakespeare.PRESETS is presets.GPT and translation.PRESETS is presets.TRANSLATOR


def test_every_preset_names_only_real_fields_and_trains_a_fixed_number_of_steps():
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for table, config in ((presets.GPT, GPTConfig), (presets.TRANSLATOR, TransformerConfig)):
        model_fields = {f.name for f in dataclasses.fields(config)}
        for name, preset in table.items():
            assert set(preset["model"]) <= model_fields, name
            assert set(preset["train"]) <= train_fields and preset["train"]["steps"] > 0, name
    assert presets.GPT["gpu"]["model"]["dropout"] == 0.1  # one gpu model: the one that was trained


def test_fields_override_a_preset_and_an_unknown_name_is_refused():
    assert GPTConfig.preset("cpu", vocab_size=65, C=16).C == 16
    with pytest.raises(ValueError, match=r"unknown preset 'tpu'; choose one of \['cpu', 'gpu'\]"):
        TransformerConfig.preset("tpu", src_vocab_size=9, tgt_vocab_size=9)

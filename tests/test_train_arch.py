"""``python -m utils.train gpt --arch llama`` (chapter 15): the same task, data, trainer and JSON line, with the
Llama-style model; its own settings checked, its checkpoints kept apart from the GPT's."""

import json

import pytest
import torch

from tests.test_train_cli import run_cli
from utils import shakespeare
from utils.models import GPT
from utils.modern import Llama, LlamaConfig
from utils.train import main


def test_arch_llama_trains_the_llama_and_says_so(tmp_path, capsys, small_data):
    code, out, err = run_cli(capsys, "--arch", "llama", "--steps", "2", "--eval-every", "1", "--out", str(tmp_path),
                             "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["task"], summary["arch"], summary["preset"], summary["steps"]) == ("gpt", "llama", "cpu", 2)
    expected = Llama(LlamaConfig.preset("cpu", vocab_size=65))
    assert summary["parameters"] == sum(p.numel() for p in expected.parameters())
    assert 3.0 < summary["val_loss"] < 4.5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model_config"] == {**vars(LlamaConfig.preset("cpu", vocab_size=65))}
    assert metrics["model_config"]["positional"] == "rope"  # the race's winner: chapter 11's GPT with RoPE
    model, tokenizer = shakespeare.model_from_checkpoint(tmp_path / "checkpoint.pt")
    assert type(model) is Llama and tokenizer.vocab_size == 65
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(model.state_dict(), checkpoint["model"])

    code, out, err = run_cli(capsys, "--arch", "llama", "--steps", "3", "--out", str(tmp_path), "--resume")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 3


def test_the_default_arch_is_the_gpt_and_the_json_line_says_so(tmp_path, capsys, small_data):
    code, out, err = run_cli(capsys, "--steps", "1", "--out", str(tmp_path), "--device", "cpu")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["arch"] == "gpt"
    model, _ = shakespeare.model_from_checkpoint(tmp_path / "checkpoint.pt")
    assert type(model) is GPT


def test_a_gpt_checkpoint_is_not_resumed_as_a_llama(tmp_path, capsys, small_data):
    assert run_cli(capsys, "--steps", "1", "--out", str(tmp_path), "--device", "cpu")[0] == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    code, out, err = run_cli(capsys, "--arch", "llama", "--steps", "2", "--out", str(tmp_path), "--resume")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "error:" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_llama_settings_are_set_and_checked_with_one_line(tmp_path, capsys, small_data):
    code, out, err = run_cli(capsys, "--arch", "llama", "--set", "model.n_kv_heads=2", "--set", "model.rope_theta=500",
                             "--steps", "1", "--out", str(tmp_path / "a"), "--device", "cpu")
    assert code == 0, err
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (metrics["model_config"]["n_kv_heads"], metrics["model_config"]["rope_theta"]) == (2, 500)
    for args, words in (
        (["--arch", "llama", "--set", "model.n_kv_heads=3"], "n_kv_heads"),  # 4 heads do not split into 3 groups
        (["--arch", "llama", "--set", "model.norm=batch"], "norm"),
        (["--set", "model.n_kv_heads=2"], "model has no setting 'n_kv_heads'"),  # a GPT has no such setting
        (["--arch", "llama", "--preset", "tpu"], "unknown preset"),
    ):
        code, out, err = run_cli(capsys, *args, "--steps", "1", "--out", str(tmp_path / "b"))
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert words in err, (args, err)
        assert not (tmp_path / "b").exists()


def test_an_unknown_arch_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gpt", "--arch", "bert"])
    assert exit_.value.code == 2
    assert "invalid choice: 'bert'" in capsys.readouterr().err

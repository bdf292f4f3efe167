"""``python -m utils.generate --pretrained FOLDER "prompt"`` (chapter 16): it writes what ``transformers``
writes, and every bad input is one line on stderr with exit code 2, before anything is loaded or run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from utils.generate import main
from utils.tokenizers import END_OF_TEXT_ID, gpt2_tokenizer

transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=16, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def folder(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2_cli")
    hf_model.save_pretrained(path)
    return path


def _run(capsys, *argv):
    """main(argv) → (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_continuation_is_the_one_transformers_writes(capsys, folder, hf_model):
    prompt = "The king said"
    code, out, err = _run(capsys, "--pretrained", str(folder), prompt, "--max-new-tokens", "12", "--temperature", "0")
    assert code == 0 and err == ""
    tokenizer = gpt2_tokenizer()
    ids = torch.tensor([tokenizer.encode(prompt)])
    expected = hf_model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=END_OF_TEXT_ID,
                                 pad_token_id=END_OF_TEXT_ID)[0, ids.shape[1]:].tolist()
    if END_OF_TEXT_ID in expected:
        expected = expected[:expected.index(END_OF_TEXT_ID)]
    assert out == prompt + tokenizer.decode(expected) + "\n"


def test_sampling_is_reproducible_by_seed(capsys, folder):
    def sample(seed):
        code, out, _ = _run(capsys, "--pretrained", str(folder), "Once", "--max-new-tokens", "20", "--top-k", "50",
                            "--top-p", "0.9", "--temperature", "1.2", "--seed", str(seed))
        assert code == 0
        return out

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_empty_prompt_starts_from_end_of_text(capsys, folder):
    code, out, err = _run(capsys, "--pretrained", str(folder), "", "--max-new-tokens", "5", "--temperature", "0")
    assert code == 0 and err == "" and len(out) > 1


def _config_without(folder, tmp_path, **changes):
    tmp_path.mkdir(exist_ok=True)
    config = {**json.loads((folder / "config.json").read_text()), **changes}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    return tmp_path


BAD_SETTINGS = [
    (["--max-new-tokens", "-1"], "--max-new-tokens must be >= 0, got -1"),
    (["--max-new-tokens", "ten"], "argument --max-new-tokens: invalid int value: 'ten'"),
    (["--temperature", "-0.5"], "--temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["--temperature", "inf"], "--temperature must be a finite number >= 0"),
    (["--top-k", "0"], "--top-k must be >= 1, got 0"),
    (["--top-p", "0"], r"--top-p must be in \(0, 1\], got 0.0"),
    (["--top-p", "1.5"], r"--top-p must be in \(0, 1\], got 1.5"),
    (["--seed", "1.5"], "argument --seed: invalid int value"),
]


@pytest.mark.parametrize("extra, message", BAD_SETTINGS, ids=[m[:30] for _, m in BAD_SETTINGS])
def test_bad_settings_are_one_line_and_exit_2(capsys, folder, extra, message):
    code, out, err = _run(capsys, "--pretrained", str(folder), "Hi", *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("python -m utils.generate: error: ")
    assert re.search(message, err), err


def test_missing_arguments_are_one_line(capsys, folder):
    code, _, err = _run(capsys, "Hi")
    assert code == 2 and err.count("\n") == 1 and "--pretrained" in err
    code, _, err = _run(capsys, "--pretrained", str(folder))
    assert code == 2 and err.count("\n") == 1 and "prompt" in err


def test_bad_folders_are_one_line_naming_the_file(capsys, folder, tmp_path):
    cases = [
        (tmp_path / "nowhere", "nowhere: not a folder"),
        (tmp_path, "config.json: missing"),
        (_config_without(folder, tmp_path / "shape", n_embd=32, n_head=2), "model.safetensors: transformer.wte.weight "
                                                                         "has shape"),
        (_config_without(folder, tmp_path / "kind", model_type="bert"), "model_type 'bert'; this book loads"),
    ]
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text((folder / "config.json").read_text())
    cases.append((tmp_path / "weights", "model.safetensors: missing"))
    for path, message in cases:
        code, out, err = _run(capsys, "--pretrained", str(path), "Hi")
        assert code == 2 and out == "" and err.count("\n") == 1, (path, err)
        assert message in err and str(path) in err, err


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      bos_token_id=1, eos_token_id=2)
    path = tmp_path_factory.mktemp("llama_cli")
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_llama_folder_needs_a_tokenizer(capsys, llama_folder):
    code, out, err = _run(capsys, "--pretrained", str(llama_folder), "Hi")
    assert code == 2 and err.count("\n") == 1
    assert "tokenizer.json: missing, and the model's 64 token ids are not GPT-2's 50,257" in err


def test_llama_folder_with_its_tokenizer(capsys, llama_folder, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<s>", "</s>", *(f"w{i}" for i in range(61))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((llama_folder / name).read_bytes())
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    code, out, err = _run(capsys, "--pretrained", str(tmp_path), "w3 w4", "--max-new-tokens", "6",
                          "--temperature", "0")
    assert code == 0 and err == "" and out.startswith("w3 w4")
    assert all(word in words for word in out.split())
    (tmp_path / "tokenizer.json").write_text("{broken")
    code, _, err = _run(capsys, "--pretrained", str(tmp_path), "w3")
    assert code == 2 and "tokenizer.json: not a readable tokenizer" in err and err.count("\n") == 1


def test_the_module_runs_from_the_command_line(folder):
    """The real entry point: ``python -m utils.generate`` (exit 0 with text, exit 2 with one line)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "utils.generate", "--pretrained", str(folder)]
    ok = subprocess.run([*command, "Hello", "--max-new-tokens", "3"], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("Hello"), ok.stderr
    bad = subprocess.run([*command, "Hello", "--top-p", "2"], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--top-p must be in (0, 1]" in bad.stderr

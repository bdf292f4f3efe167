"""The command line ``python -m utils.train gpt ...``: its JSON line, its files, and exit code 2 on bad input.

Most tests call ``main`` in this process on a small slice of Tiny Shakespeare (the
real run evaluates on the whole validation split, which takes seconds); two run the
real command in a subprocess.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch

from utils.train import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *args):
    code = main(["gpt", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_last_stdout_line_is_one_json_summary(tmp_path, capsys, small_data):
    code, out, err = run_cli(capsys, "--steps", "2", "--eval-every", "1", "--out", str(tmp_path), "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    for key in ("task", "preset", "device", "steps", "seconds", "train_tokens_per_second", "val_loss"):
        assert key in summary, key
    assert (summary["task"], summary["preset"], summary["device"], summary["steps"]) == ("gpt", "cpu", "cpu", 2)
    assert 3.0 < summary["val_loss"] < 4.5 and summary["seconds"] > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["summary"] == {k: v for k, v in summary.items() if k not in ("task", "seconds")}
    assert metrics["history"]["eval_step"] == [1, 2]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["metadata"]["task"] == "gpt"

    code, out, err = run_cli(capsys, "--steps", "3", "--out", str(tmp_path), "--resume")  # one step more
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 3


def test_bad_arguments_exit_2_with_one_line_and_never_touch_a_good_checkpoint(tmp_path, capsys, small_data):
    assert run_cli(capsys, "--steps", "1", "--out", str(tmp_path))[0] == 0
    good = tmp_path / "checkpoint.pt"
    before = good.read_bytes()
    other_model = tmp_path / "other"
    other_model.mkdir()
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["metadata"]["model"]["C"] = 32
    torch.save(checkpoint, other_model / "checkpoint.pt")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(before[:1000])
    cases = [
        (["--preset", "huge", "--out", str(tmp_path)], "unknown preset 'huge'"),
        (["--steps", "-5", "--out", str(tmp_path)], "--steps must be >= 0"),
        (["--steps", "2", "--out", str(tmp_path)], "already exists"),  # no --resume: refuse, do not overwrite
        (["--resume", "--out", str(other_model)], "another model"),
        (["--resume", "--out", str(corrupt)], "not a readable checkpoint"),
        (["--resume", "--out", str(tmp_path / "missing")], "no checkpoint"),
        (["--eval-every", "0", "--out", str(tmp_path), "--overwrite"], "--eval-every must be >= 1"),
        (["--set", "model.bogus=1", "--out", str(tmp_path / "new")], "model has no setting 'bogus'; it has C,"),
        (["--set", "train.device=cuda", "--out", str(tmp_path / "new")], "train.device=cuda': use --device"),
        (["--set", "train.seed=3", "--out", str(tmp_path / "new")], "use --seed"),
        (["--set", "model.norm_first=no", "--out", str(tmp_path / "new")], "norm_first must be True or False"),
        (["--set", "train.betas=0.9", "--out", str(tmp_path / "new")], "betas must be two numbers"),
        (["--set", "lr=1", "--out", str(tmp_path / "new")], "expected SECTION.FIELD=VALUE"),
    ]
    for args, message in cases:
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert good.read_bytes() == before
    assert (corrupt / "checkpoint.pt").read_bytes() == before[:1000]


def test_the_real_command_answers_help_and_bad_presets():
    env = {"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "utils.train", *args], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=120)
    result = run("gpt", "--help")
    assert result.returncode == 0
    for option in ("--preset", "--steps", "--out", "--resume", "--device", "--compile", "--seed", "--eval-every",
                   "--overwrite"):
        assert option in result.stdout, option
    result = run("gpt", "--preset", "huge")
    assert result.returncode == 2 and result.stderr.strip() == "error: unknown preset 'huge'; choose one of ['cpu', 'gpu']"
    result = run("gpt", "--device", "tpu")
    assert result.returncode == 2 and "invalid choice" in result.stderr

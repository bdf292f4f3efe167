"""benchmarks.gpu_check: the plan a GPU session runs once, checked here without a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parent.parent


def fake_nanogpt(folder: Path) -> Path:
    for name in ("train.py", "model.py", "config/train_shakespeare_char.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("# stand-in\n")
    return folder


def test_dry_run_checks_the_whole_plan_and_exits_0(tmp_path):
    nanogpt = fake_nanogpt(tmp_path / "nanoGPT")
    env = {**os.environ, "LLM_FROM_SCRATCH_NANOGPT": str(nanogpt), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (tmp_path / "out" / "report.md").is_file()
    checks = {c["check"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values() if c["blocking"]), checks
    assert checks["nanoGPT"]["ok"] and str(nanogpt) in checks["nanoGPT"]["detail"]
    assert checks["LLM_FROM_SCRATCH_PRECISION"]["ok"]  # the trainer honours the variable
    jobs = {j["name"]: j for j in report["jobs"]}
    stems = [p.stem for p in gpu_check.chapters()]
    assert len(stems) >= 15 and all(stem in jobs for stem in stems)  # every chapter, on CUDA
    assert all(jobs[stem]["env"]["LLM_FROM_SCRATCH_DEVICE"] == "cuda" for stem in stems)
    fp16 = [j for j in report["jobs"] if j["group"] == "fp16"]
    assert sorted(j["name"][:2] for j in fp16) == ["11", "12", "13"]
    assert all(j["env"]["LLM_FROM_SCRATCH_PRECISION"] == "fp16" for j in fp16)
    race = next(j for j in report["jobs"] if j["group"] == "race")
    assert race["exclusive"] and race["command"][-2:] == ["--nanogpt", str(nanogpt)]
    assert all(j["status"] == "planned" for j in report["jobs"])


def test_without_nanogpt_the_race_is_ours_alone_and_bad_paths_are_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("LLM_FROM_SCRATCH_NANOGPT", raising=False)
    jobs = gpu_check.plan(gpu_check.nanogpt_path(None), {"race", "generate"}, 10, tmp_path)
    assert [j.group for j in jobs] == ["generate", "race"]
    assert "--nanogpt" not in jobs[1].command and "ours only" in jobs[1].name
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--dry-run", "--out", str(tmp_path), "--nanogpt", str(tmp_path / "absent")])
    assert stop.value.code == 2 and "is not a folder" in capsys.readouterr().err
    for bad in (["--only", "chapters,nonsense"], ["--budget", "nan"], ["--reserve", "-1"]):
        with pytest.raises(SystemExit) as stop:
            gpu_check.main(["--dry-run", "--out", str(tmp_path), *bad])
        assert stop.value.code == 2


def test_a_real_run_needs_a_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "device_facts", lambda: {"device": "no CUDA GPU", "torch": "x", "python": "3",
                                                            "cpu_cores": 2})
    assert gpu_check.main(["--out", str(tmp_path), "--only", "chapters"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def notebook(folder: Path, *cells: str) -> Path:
    path = folder / "chapters" / "99_check.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "id": f"c{i}", "source": s, "metadata": {},
                                           "outputs": [], "execution_count": None} for i, s in enumerate(cells)],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize("failing", [False, True])
def test_the_notebook_runner_fails_on_any_exception(tmp_path, failing):
    path = notebook(tmp_path, "x = 2\n%time y = x + 1", "!echo shell works",
                    "assert y == 2, 'y is 3'" if failing else "assert y == 3", "print('end')")
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--run-notebook", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    outcome = gpu_check.last_json(result.stdout)
    assert "shell works" in result.stdout
    if failing:
        assert result.returncode == 1 and outcome["failed_cell"] == 2
        assert "AssertionError: y is 3" in outcome["error"] and "end" not in result.stdout.splitlines()
    else:
        assert result.returncode == 0 and outcome["cells"] == 4


def test_figures_are_read_from_the_race_and_the_benchmarks():
    race = gpu_check.Job("race", "race", [])
    output = "table\n" + json.dumps({"rows": [
        ["utils.train gpt --preset gpu --compile", {"val_loss": 1.45, "seconds": 60.0, "steps": 1500,
                                                    "tokens_per_second": 9}],
        ["nanoGPT recipe (gpu)", {"val_loss": 1.47, "seconds": 200.0, "steps": 5000, "tokens_per_second": 8}]]})
    figures = gpu_check.figures_of(race, output)
    assert figures["wall_ratio"] == 0.3 and figures["targets_met"]
    generate = gpu_check.Job("generate", "generate", [])
    row = {"model": "cpu preset", "uncached_s": 1.0, "cached_s": 0.25, "speed_up": 4.0}
    assert gpu_check.figures_of(generate, json.dumps({"rows": [row]}))["cpu preset"]["speed_up"] == 4.0


def test_the_run_path_schedules_reports_and_fails_on_any_failed_job(monkeypatch, tmp_path, capsys):
    """The real run with a pretend GPU and three tiny jobs: one passes, one fails, one runs out of time."""
    python = sys.executable
    jobs = [gpu_check.Job("passes", "chapters", [python, "-c", "print('{\"cells\": 3}')"]),
            gpu_check.Job("fails", "chapters", [python, "-c", "raise SystemExit('broken')"]),
            gpu_check.Job("too slow", "race", [python, "-c", "import time; time.sleep(30)"], exclusive=True)]
    monkeypatch.setattr(gpu_check, "plan", lambda *args: jobs)
    monkeypatch.setattr(gpu_check, "MIN_START", 1.0)
    monkeypatch.setattr(gpu_check, "device_facts", lambda: {"device": "Pretend GPU", "torch": "x", "python": "3",
                                                            "cpu_cores": 2, "capability": "9.0"})
    assert gpu_check.main(["--out", str(tmp_path), "--budget", "8", "--reserve", "3", "--parallel", "2"]) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    status = {j["name"]: (j["status"], j["figures"], j["error"]) for j in report["jobs"]}
    assert status["passes"] == ("passed", {"cells": 3}, "")
    assert status["fails"][0] == "failed" and "broken" in status["fails"][2]
    assert status["too slow"][0] == "timeout"
    assert "Pretend GPU" in (tmp_path / "report.md").read_text()
    assert "===== fails" in (tmp_path / "logs.txt").read_text()
    assert "1 of 3 jobs passed" in capsys.readouterr().out

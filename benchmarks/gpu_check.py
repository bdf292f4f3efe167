"""The prepared GPU check (issue 18): everything the book promises on a GPU, in one run.

    python -m benchmarks.gpu_check --out DIR [--nanogpt DIR] [--budget 480] [--only GROUP,...]
    python -m benchmarks.gpu_check --dry-run --out DIR      # any machine: checks the plan in seconds
    python -m benchmarks.gpu_check --prepare scratch/gpu --nanogpt DIR   # here, before a GPU session

On one CUDA machine, in at most ``--budget`` seconds of wall time (8 minutes), it runs:

* ``chapters``: every chapter top to bottom on CUDA, each in a fresh Python process
  (IPython's shell, as in a notebook: ``%`` magics and ``!`` commands work), several at
  once; a chapter fails on any exception or failed assertion (stored CPU outputs are
  not compared); seconds per chapter;
* ``fp16``: chapters 11-13 again with ``LLM_FROM_SCRATCH_PRECISION=fp16`` (the T4's path:
  the trainer honours the variable);
* ``translate``: short ``python -m utils.train translate --preset gpu`` and ``instruct --preset gpu`` runs;
* then, with the GPU to itself (timings): ``generate`` (``benchmarks/generate.py``,
  synchronised) and ``race`` (``benchmarks/train_gpt.py --preset gpu``: ours against
  nanoGPT's compiled baby GPT, ``config/train_shakespeare_char.py``, one after the
  other, both scored on the whole validation split).

It writes ``DIR/report.md``, ``DIR/report.json`` (device, PyTorch version, each job's
status, seconds and figures) and ``DIR/logs.txt`` (the end of each job's output), and
exits 1 if any job failed or ran out of time. The phases share the budget: the
parallel phase stops when only ``--reserve`` seconds are left for the timed phase
(benchmarks/README.md's H200 figures: 62.5 s for ours, near 165 s for nanoGPT's
recipe, plus each one's start-up and scoring, and generate). A job cut by the budget is reported as such; run it
again alone with ``--only``. The device tool's limit for one command is 600 s: run
with ``timeout_s`` 600.

nanoGPT is not part of the book: its checkout comes from ``--nanogpt`` or the
environment variable ``LLM_FROM_SCRATCH_NANOGPT`` (without one the race runs ours
alone). The data folder is ``LLM_FROM_SCRATCH_DATA``'s, as everywhere.

A GPU session (the device machine has no internet, no ``../shared`` and no IPython):

1. here: ``python -m benchmarks.gpu_check --prepare scratch/gpu --nanogpt /path/to/nanoGPT``
   copies the data and nanoGPT (without its ``.git``) into ``scratch/gpu`` and downloads
   the wheels of IPython and what it needs that the device image lacks;
2. here: ``LLM_FROM_SCRATCH_DATA=scratch/gpu/data python -m benchmarks.gpu_check --dry-run
   --out scratch/gpu/plan --nanogpt scratch/gpu/nanoGPT`` (every check passes);
3. there, one run with ``carry: ["scratch/gpu"]``, the command that ``--prepare`` prints.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NANOGPT_VARIABLE = "LLM_FROM_SCRATCH_NANOGPT"
PRECISION_VARIABLE = "LLM_FROM_SCRATCH_PRECISION"
DEVICE_VARIABLE = "LLM_FROM_SCRATCH_DEVICE"
DATA_VARIABLE = "LLM_FROM_SCRATCH_DATA"
GROUPS = ("chapters", "fp16", "translate", "generate", "race")
FP16_CHAPTERS = ("11", "12", "13")
# What the notebook runner needs beyond the device image (its package list, KINDS.md, 2026-11-17):
# IPython and its requirements, less those the image has.
ON_THE_DEVICE_IMAGE = {"pygments", "psutil", "typing-extensions", "packaging"}
RUNNER_MODULES = ("IPython", "matplotlib_inline")
MIN_START = 10.0  # seconds: a job with less of the budget left is not started


@dataclass
class Job:
    name: str
    group: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    exclusive: bool = False  # needs the GPU to itself (it is timed)
    timeout: float = 600.0
    status: str = "planned"  # planned | passed | failed | timeout | skipped
    seconds: float | None = None
    figures: dict = field(default_factory=dict)
    error: str = ""


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


def nanogpt_path(given: str | None) -> Path | None:
    value = given or os.environ.get(NANOGPT_VARIABLE)
    return Path(value).expanduser().resolve() if value else None


def plan(nanogpt: Path | None, only: set[str], translate_steps: int, work: Path) -> list[Job]:
    """The jobs of one GPU check, in the order they start."""
    python = sys.executable
    on_gpu = {DEVICE_VARIABLE: "cuda", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0",
              "MPLBACKEND": "Agg"}
    jobs = []
    for notebook in chapters():
        runner = [python, "-m", "benchmarks.gpu_check", "--run-notebook", str(notebook.relative_to(ROOT))]
        if "chapters" in only:
            jobs.append(Job(notebook.stem, "chapters", runner, dict(on_gpu)))
        if "fp16" in only and notebook.name[:2] in FP16_CHAPTERS:
            jobs.append(Job(notebook.stem + " (fp16)", "fp16", runner, {**on_gpu, PRECISION_VARIABLE: "fp16"}))
    if "translate" in only:
        jobs.append(Job("translate --preset gpu (short)", "translate",
                        [python, "-m", "utils.train", "translate", "--preset", "gpu", "--device", "cuda",
                         "--steps", str(translate_steps), "--test-sentences", "200", "--overwrite",
                         "--out", str(work / "translate")], {"TQDM_DISABLE": "1"}))
        # chapter 17's decoder-only task at its gpu preset (never run on a GPU before): pretraining, then tuning
        jobs.append(Job("instruct --preset gpu (short)", "translate",
                        [python, "-m", "utils.train", "instruct", "--preset", "gpu", "--device", "cuda",
                         "--steps", str(translate_steps), "--set", f"pretrain.steps={max(1, translate_steps // 3)}",
                         "--test-sentences", "200", "--overwrite", "--out", str(work / "instruct")],
                        {"TQDM_DISABLE": "1"}))
    if "generate" in only:
        jobs.append(Job("benchmarks/generate.py", "generate",
                        [python, "-m", "benchmarks.generate", "--device", "cuda"], {}, exclusive=True))
    if "race" in only:
        race = [python, "benchmarks/train_gpt.py", "--preset", "gpu"]
        jobs.append(Job("GPU race" + ("" if nanogpt else " (ours only: no nanoGPT)"), "race",
                        race + (["--nanogpt", str(nanogpt)] if nanogpt else []), {}, exclusive=True))
    return jobs


def last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object ({} if none)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}


def figures_of(job: Job, output: str) -> dict:
    found = last_json(output)
    if job.group == "race" and found:
        rows = found.get("rows", [])
        ours = [r for name, r in rows if not name.startswith("nanoGPT")]
        anchor = [r for name, r in rows if name.startswith("nanoGPT")]
        figures = {"ours_val_loss": ours[0]["val_loss"], "ours_seconds": round(ours[0]["seconds"], 1),
                   "ours_steps": ours[0]["steps"], "ours_tokens_per_second": ours[0]["tokens_per_second"]}
        if anchor:
            figures.update(nanogpt_val_loss=anchor[0]["val_loss"], nanogpt_seconds=round(anchor[0]["seconds"], 1),
                           nanogpt_tokens_per_second=anchor[0]["tokens_per_second"],
                           wall_ratio=round(ours[0]["seconds"] / anchor[0]["seconds"], 3))
            figures["targets_met"] = figures["ours_val_loss"] <= 1.47 and figures["wall_ratio"] <= 1 / 3
        return figures
    if job.group == "generate" and found:
        return {row["model"]: {"uncached_s": round(row["uncached_s"], 3), "cached_s": round(row["cached_s"], 3),
                               "speed_up": round(row["speed_up"], 2)} for row in found.get("rows", [])}
    if job.group == "translate" and found:
        keys = ("bleu", "bleu_greedy", "bleu_val", "val_loss", "steps", "train_seconds", "steps_per_second")
        return {key: found[key] for key in keys if key in found}
    if job.group in ("chapters", "fp16") and found:
        return {"cells": found.get("cells")}
    return {}


def run_job(job: Job, deadline: float, threads: int) -> tuple[Job, str]:
    """Run one job with what is left of the budget; fills in its status, seconds and figures."""
    left = deadline - time.monotonic()
    if left < MIN_START:
        job.status, job.error = "skipped", "out of time: the budget was spent before it could start"
        return job, ""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **job.env}
    if not job.exclusive and "OMP_NUM_THREADS" not in job.env:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.monotonic()
    try:
        result = subprocess.run(job.command, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=min(job.timeout, left))
        output = result.stdout + result.stderr
        job.status = "passed" if result.returncode == 0 else "failed"
        if result.returncode != 0:
            found = last_json(result.stdout)
            job.error = found.get("error") or "\n".join(output.strip().splitlines()[-6:])
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (
            expired.stdout or "")
        job.status, job.error = "timeout", f"stopped after {min(job.timeout, left):.0f} s (the budget)"
    job.seconds = round(time.monotonic() - started, 1)
    if job.status == "passed":
        try:
            job.figures = figures_of(job, output)
        except (KeyError, IndexError, TypeError) as error:
            job.error = f"figures not found in the output: {error!r}"
    return job, output


def device_facts() -> dict:
    import torch

    facts = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda,
             "cpu_cores": os.cpu_count()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(device=properties.name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                     memory_gib=round(properties.total_memory / 2**30, 1))
    else:
        facts["device"] = "no CUDA GPU"
    return facts


def write_report(out: Path, facts: dict, jobs: list[Job], checks: list[dict], dry_run: bool,
                 logs: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"dry_run": dry_run, "facts": facts, "checks": checks,
                                                 "jobs": [asdict(j) for j in jobs]}, indent=1) + "\n")
    lines = [f"# GPU check{' (dry run: the plan)' if dry_run else ''}", "",
             f"{facts.get('device')} (compute capability {facts.get('capability', '-')}), "
             f"torch {facts['torch']}, CUDA {facts.get('cuda')}, Python {facts['python']}, "
             f"{facts['cpu_cores']} cores; {time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    if checks:
        lines += ["| check | result |", "| --- | --- |"]
        lines += [f"| {c['check']} | {'ok' if c['ok'] else 'NO'}: {c['detail']} |" for c in checks]
        lines.append("")
    lines += ["| job | status | seconds | figures / error |", "| --- | --- | --- | --- |"]
    for job in jobs:
        what = json.dumps(job.figures) if job.figures else job.error.replace("\n", " ")[:300]
        lines.append(f"| {job.name} | {job.status} | {job.seconds if job.seconds is not None else ''} | {what} |")
    if dry_run:
        lines += ["", "Commands:", ""] + [f"    {' '.join(f'{k}={v}' for k, v in j.env.items())} "
                                          f"{' '.join(j.command)}" for j in jobs]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if logs:
        (out / "logs.txt").write_text("".join(f"===== {name}\n{text[-4000:]}\n" for name, text in logs.items()))


def help_text(command: list[str]) -> tuple[int, str]:
    """``command --help``'s exit code and text, run in this process (torch is imported once, not four times)."""
    import contextlib
    import io
    import runpy

    text, saved = io.StringIO(), sys.argv
    code = 0
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            if command[1] == "-m":
                sys.argv = [command[2], *command[3:], "--help"]
                runpy.run_module(command[2], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [command[1], *command[2:], "--help"]
                runpy.run_path(str(ROOT / command[1]), run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as error:  # an import or start-up error: the command would not run
        code, text = 1, io.StringIO(f"{type(error).__name__}: {error}")
    finally:
        sys.argv = saved
    return code, text.getvalue()


def dry_run_checks(jobs: list[Job], nanogpt: Path | None) -> list[dict]:
    """What a GPU run needs, checked here in seconds: (check, ok, detail, blocking)."""
    import importlib.util

    checks = []

    def check(name: str, ok: bool, detail: str, blocking: bool = True) -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": detail, "blocking": blocking})

    for notebook in chapters():
        try:
            cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
            code = sum(c["cell_type"] == "code" for c in cells)
            check(f"chapter {notebook.name}", code > 0, f"{code} code cells")
        except (OSError, ValueError, KeyError) as error:
            check(f"chapter {notebook.name}", False, f"unreadable: {error}")
    commands = {
        "utils.train gpt": ([sys.executable, "-m", "utils.train", "gpt"], ("--preset", "--compile", "--device")),
        "utils.train translate": ([sys.executable, "-m", "utils.train", "translate"],
                                  ("--preset", "--steps", "--test-sentences", "--device", "--out")),
        "utils.train instruct": ([sys.executable, "-m", "utils.train", "instruct"],
                                 ("--preset", "--steps", "--test-sentences", "--device", "--out", "--lora")),
        "benchmarks/train_gpt.py": ([sys.executable, "benchmarks/train_gpt.py"], ("--nanogpt", "--preset")),
        "benchmarks/generate.py": ([sys.executable, "-m", "benchmarks.generate"], ("--device",)),
    }
    helps = {name: help_text(command) for name, (command, _) in commands.items()}
    for name, (_, flags) in commands.items():
        code, text = helps[name]
        missing = [flag for flag in flags if flag not in text]
        check(f"command {name}", code == 0 and not missing,
              "--help lists " + ", ".join(flags) if code == 0 and not missing
              else f"exit {code}, flags missing: {missing or '-'}; {text.strip().splitlines()[-1:]}")
    if "gpu" not in helps["utils.train gpt"][1]:
        check("preset gpu", False, "utils.train gpt --help does not name a 'gpu' preset")
    if nanogpt is None:
        check("nanoGPT", True, f"absent (neither --nanogpt nor {NANOGPT_VARIABLE}): the race runs ours alone",
              blocking=False)
    else:
        needed = [nanogpt / "train.py", nanogpt / "model.py", nanogpt / "config" / "train_shakespeare_char.py"]
        absent = [str(p.relative_to(nanogpt)) for p in needed if not p.is_file()]
        check("nanoGPT", not absent, f"{nanogpt}: " + (f"missing {absent}" if absent else "train.py, model.py and "
                                                          "config/train_shakespeare_char.py found"))
    from utils import data, environment

    folder = data.data_dir()
    absent = [name for name in data.DATASETS if not (folder / name).is_file()]
    check("data", not absent, f"{DATA_VARIABLE}={os.environ.get(DATA_VARIABLE, '(unset)')} -> {folder}: "
          + (f"missing {absent} (the device machine cannot download)" if absent else
             f"all {len(data.DATASETS)} files"), blocking=False)
    os.environ[DEVICE_VARIABLE], saved = "meta", os.environ.get(DEVICE_VARIABLE)
    try:
        honoured = environment.pick_device().type == "meta"
    finally:
        os.environ.pop(DEVICE_VARIABLE) if saved is None else os.environ.__setitem__(DEVICE_VARIABLE, saved)
    check(DEVICE_VARIABLE, honoured, "utils.environment.pick_device reads it")
    check(DATA_VARIABLE, True, f"utils.data.data_dir() = {folder}")
    try:
        from utils import trainer

        os.environ[PRECISION_VARIABLE], saved = "fp16", os.environ.get(PRECISION_VARIABLE)
        try:
            forced = trainer.precision_from_environment("auto")
        finally:
            os.environ.pop(PRECISION_VARIABLE) if saved is None else os.environ.__setitem__(PRECISION_VARIABLE, saved)
        check(PRECISION_VARIABLE, forced == "fp16", f"utils.trainer.precision_from_environment('auto') -> {forced!r}")
    except (ImportError, AttributeError) as error:
        check(PRECISION_VARIABLE, False, f"not read by the trainer: {error}")
    imported = environment.third_party_imports()
    missing = sorted(m for m in [*imported, *RUNNER_MODULES] if importlib.util.find_spec(m) is None)
    check("Python modules", not missing, "missing here: " + ", ".join(missing) if missing else
          f"the runner's and the chapters' {len(imported)} third-party modules import", blocking=False)
    check("plan", bool(jobs), f"{len(jobs)} jobs: " + ", ".join(sorted({j.group for j in jobs})))
    return checks


def run_notebook(path: str) -> int:
    """Run a notebook's code cells in order in this fresh process, as a notebook would (IPython's shell).

    Prints a JSON line: cells run, seconds, and the first failing cell with its error.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    notebook = (ROOT / path).resolve()
    cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    os.chdir(notebook.parent)  # as Jupyter starts a notebook's kernel
    config = Config()
    config.HistoryManager.enabled = False  # several chapters at once: no shared history database
    shell = InteractiveShell.instance(config=config)
    started = time.perf_counter()
    for number, cell in enumerate(cells):
        source = "".join(cell["source"])
        result = shell.run_cell(source, store_history=False, silent=False)
        if not result.success:
            error = result.error_in_exec or result.error_before_exec
            print(json.dumps({"cells": number, "failed_cell": number, "cell_id": cell.get("id"),
                              "error": f"cell {number} ({cell.get('id')}): {type(error).__name__}: {error}"[:1000],
                              "seconds": round(time.perf_counter() - started, 1)}))
            return 1
    print(json.dumps({"cells": len(cells), "seconds": round(time.perf_counter() - started, 1)}))
    return 0


def runner_wheels() -> dict[str, str]:
    """IPython and its requirements on Python 3.12 Linux, at this environment's versions, less the image's."""
    import importlib.metadata

    from packaging.requirements import Requirement

    marker_env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                  "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    found: dict[str, str] = {}

    def walk(name: str) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found or key in ON_THE_DEVICE_IMAGE:
            return
        found[key] = importlib.metadata.version(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(marker_env):
                walk(requirement.name)

    walk("ipython")
    return found


def prepare(folder: Path, nanogpt: Path | None) -> int:
    """Copy what the device machine lacks into ``folder`` (ignored by git), and print the command to run there."""
    from utils import data

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(data.data_dir(), folder / "data", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    if nanogpt is not None:
        shutil.copytree(nanogpt, folder / "nanoGPT", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", "assets", "*.ipynb", "out*"))
    wheels = runner_wheels()
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "-d", str(folder / "wheels"), *(f"{name}=={version}" for name, version in wheels.items())],
                   check=True)
    relative = folder.resolve().relative_to(ROOT)
    print(f"prepared {relative}: data, {'nanoGPT, ' if nanogpt else ''}{len(wheels)} wheels. On the GPU, with "
          f'carry ["{relative}"]:')
    print(f"python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site {relative}/wheels/*.whl"
          f" && export PYTHONPATH=/tmp/site && {DATA_VARIABLE}=$PWD/{relative}/data PYTHONUNBUFFERED=1 "
          f"python3 -m benchmarks.gpu_check --out $OUT" + (f" --nanogpt {relative}/nanoGPT" if nanogpt else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for report.md, report.json and logs.txt")
    parser.add_argument("--dry-run", action="store_true", help="check the plan here, without a GPU, in seconds")
    parser.add_argument("--nanogpt", help=f"a nanoGPT checkout (default: ${NANOGPT_VARIABLE}; none: ours alone)")
    parser.add_argument("--budget", type=float, default=480, help="wall-clock seconds for everything (default 480)")
    parser.add_argument("--reserve", type=float, default=330,
                        help="seconds kept for the timed phase, generate and race (default 330)")
    parser.add_argument("--parallel", type=int, default=0, help="jobs at once in the first phase (default: one a core)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--translate-steps", type=int, default=300, help="steps of the short translate run")
    parser.add_argument("--run-notebook", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help="copy data, nanoGPT and IPython's wheels into this folder")
    args = parser.parse_args(argv)
    if args.run_notebook:
        return run_notebook(args.run_notebook)
    nanogpt = nanogpt_path(args.nanogpt)
    if nanogpt is not None and not nanogpt.is_dir():
        parser.error(f"--nanogpt / {NANOGPT_VARIABLE}: {nanogpt} is not a folder")
    if args.prepare:
        return prepare(args.prepare, nanogpt)
    if args.out is None:
        parser.error("--out DIR is required")
    only = {g.strip() for g in args.only.split(",") if g.strip()}
    if not only or only - set(GROUPS):
        parser.error(f"--only: groups are {', '.join(GROUPS)}, got {args.only!r}")
    if not (0 < args.budget < float("inf") and 0 <= args.reserve < float("inf")) or args.parallel < 0 \
            or args.translate_steps < 1:
        parser.error("--budget must be > 0, --reserve and --parallel >= 0, --translate-steps >= 1")
    facts = device_facts()
    if not args.dry_run and facts["device"] == "no CUDA GPU":
        print("gpu_check: no CUDA GPU on this machine; use --dry-run to check the plan", file=sys.stderr)
        return 2
    # the translate run's checkpoint folder (made, and removed afterwards, only by a real run)
    work = Path(tempfile.gettempdir() if args.dry_run else tempfile.mkdtemp(prefix="gpu_check_"))
    jobs = plan(nanogpt, only, args.translate_steps, work)
    if args.dry_run:
        started = time.monotonic()
        checks = dry_run_checks(jobs, nanogpt)
        write_report(args.out, facts, jobs, checks, True, {})
        for c in checks:
            print(f"{'ok ' if c['ok'] else 'NO '} {c['check']}: {c['detail']}")
        print(f"{len(jobs)} jobs planned; dry run took {time.monotonic() - started:.1f} s; "
              f"{args.out / 'report.md'}")
        return 0 if all(c["ok"] or not c["blocking"] for c in checks) else 1
    deadline = time.monotonic() + args.budget
    parallel = args.parallel or max(1, os.cpu_count() or 2)  # each chapter: one CPU thread, mostly GPU work
    threads = max(1, (os.cpu_count() or 2) // parallel)
    logs: dict[str, str] = {}
    # the longest first (training chapters, fp16 reruns, the translate run), so the phase ends sooner
    first = sorted((j for j in jobs if not j.exclusive), key=lambda j: j.group == "chapters" and j.name < "11")
    print(f"{facts['device']}: {len(first)} jobs, {parallel} at once, then {len(jobs) - len(first)} alone; "
          f"budget {args.budget:.0f} s", flush=True)
    first_deadline = deadline - (args.reserve if len(first) < len(jobs) else 0)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for job, output in pool.map(lambda j: run_job(j, first_deadline, threads), first):
            logs[job.name] = output
            print(f"{job.status:>8} {job.seconds or 0:>6} s  {job.name}  {job.error[:150]}", flush=True)
    for job in (j for j in jobs if j.exclusive):
        job, logs[job.name] = run_job(job, deadline, threads)
        print(f"{job.status:>8} {job.seconds or 0:>6} s  {job.name}  {job.figures or job.error[:300]}", flush=True)
    write_report(args.out, facts, jobs, [], False, logs)
    shutil.rmtree(work, ignore_errors=True)
    bad = [j.name for j in jobs if j.status != "passed"]
    print(f"{len(jobs) - len(bad)} of {len(jobs)} jobs passed" + (f"; not: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""README's promises that no other test checks, one test each: Ctrl-C on the WebUI stops its training after a
save, the grad scaler is restored on resume, /start_training fills in the dataset, language and base folder, the
old flag spellings, and identical restores on every rank of a multi-process launch."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, train_options

from utils.checkpoints.classify import classify_checkpoint
from utils.procinfo import process_start_ticks


def wait_for(predicate, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def complete_events(path: Path) -> list[dict]:
    text = path.read_text() if path.is_file() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


# --- Ctrl-C on the WebUI ------------------------------------------------------------------------------------
# A WebUI reduced to its job manager: start one job, then serve (sleep) until Ctrl-C.
WEBUI = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from utils.options import TrainOptions
from utils.webui.jobs import TrainingJobs
status = TrainingJobs().start(TrainOptions.from_dict(json.loads(sys.argv[2])))
print(json.dumps({"accepted": status["accepted"], "error": status["error"], "pid": status["pid"],
                  "progress": status["progress_file"], "log": status["log_file"]}), flush=True)
while True:
    time.sleep(1)
"""


def test_ctrl_c_on_the_webui_stops_its_training_job_after_a_save(tiny_base, tiny_dataset, tmp_path):
    """Ctrl-C in the WebUI's terminal reaches its whole process group: the training job saves a checkpoint at
    the next update and ends with its final event (what the CLI writes last before exit 0)."""
    opts = dataclasses.asdict(train_options(tiny_base, tiny_dataset, tmp_path))
    webui = subprocess.Popen([sys.executable, "-c", WEBUI, str(ROOT), json.dumps(opts)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)  # its own process group, as a terminal gives it
    job = json.loads(webui.stdout.readline())
    assert job["accepted"], job["error"]
    progress, ticks = Path(job["progress"]), process_start_ticks(job["pid"])
    wait_for(lambda: any(e["event"] == "update" for e in complete_events(progress)))
    os.killpg(webui.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    webui.wait(timeout=60)
    wait_for(lambda: process_start_ticks(job["pid"]) != ticks, timeout=120)  # the training process ended too
    events = complete_events(progress)
    end = events[-1]
    assert (end["event"], end["reason"]) == ("end", "stop requested"), events[-3:]
    assert 1 <= end["step"] < end["total"] == 8  # stopped early, not run to the end
    assert classify_checkpoint(end["path"]).step == end["step"]
    assert "Stop requested: saving a checkpoint at the next update." in Path(job["log"]).read_text()


# --- the grad scaler ----------------------------------------------------------------------------------------
FORCED_SCALER = {"scale": 1024.0, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 7,
                 "_growth_tracker": 3}


def give_trainer_a_scaler(monkeypatch, state: dict | None) -> None:
    """Without CUDA coqui makes no grad scaler: give each RunTrainer a CPU one, in `state` (None: a fresh one)."""
    from utils.training.trainer import RunTrainer

    build = RunTrainer.for_run.__func__

    def for_run(cls, *args, **kwargs):
        trainer = build(cls, *args, **kwargs)
        trainer.scaler = torch.amp.GradScaler("cpu")
        if state is not None:
            trainer.scaler.load_state_dict(state)
        return trainer

    monkeypatch.setattr(RunTrainer, "for_run", classmethod(for_run))


def test_grad_scaler_is_saved_and_restored_on_resume(train, tmp_path, monkeypatch):
    """A run with a scaler in a forced state saves it; a resume that would otherwise start with a fresh scaler
    (scale 65536) ends with the saved one. The resume stops at once (--max_steps reached), saving what it restored."""
    give_trainer_a_scaler(monkeypatch, FORCED_SCALER)
    first = train(tmp_path, max_steps=1)
    saved = torch.load(first.last_checkpoint, weights_only=True, mmap=True)["scaler"]
    assert (saved["scale"], saved["growth_interval"]) == (FORCED_SCALER["scale"], FORCED_SCALER["growth_interval"])
    give_trainer_a_scaler(monkeypatch, None)
    resumed = train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=1)
    assert (resumed.mode, resumed.start_step, resumed.step) == ("resume", 1, 1)
    assert torch.load(resumed.last_checkpoint, weights_only=True, mmap=True)["scaler"] == saved


# --- /start_training's defaults -----------------------------------------------------------------------------
def test_start_training_fills_in_dataset_language_and_base_folder(tiny_base, tiny_dataset, tmp_path):
    """What the options leave out comes from the WebUI: its dataset's CSVs, lang.txt and base folder. The job
    is the real CLI with --dry_run, which reads those options and prints its plan."""
    from utils.webui.api import api_start_training
    from utils.webui.context import WebUIContext
    from utils.webui.jobs import TrainingJobs
    from utils.webui.paths import WebUIConfig

    dataset = tmp_path / "work" / "dataset"
    dataset.mkdir(parents=True)
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        (dataset / name).write_bytes((tiny_dataset.folder / name).read_bytes())
    (dataset / "wavs").symlink_to(tiny_dataset.folder / "wavs")
    (dataset / "lang.txt").write_text("de\n")
    jobs = TrainingJobs(command=[sys.executable, "-u", str(ROOT / "utils" / "gpt_train.py"), "--dry_run", "--json"])
    ctx = WebUIContext.create(WebUIConfig(output=tmp_path / "work", base_dir=tiny_base), jobs=jobs)
    status = api_start_training(ctx, {"max_steps": 3})
    assert status["accepted"], status["error"]
    argv = status["command"]
    given = {flag: argv[argv.index(flag) + 1] for flag in argv if flag.startswith("--") and flag != "--dry_run"
             and flag != "--json"}
    assert given == {"--train_csv": str(dataset / "metadata_train.csv"),
                     "--eval_csv": str(dataset / "metadata_eval.csv"), "--output_path": str(tmp_path / "work"),
                     "--base_model_dir": str(tiny_base), "--language": "de", "--max_steps": "3",
                     "--progress_jsonl": status["progress_file"]}
    final = jobs.wait(timeout=120)
    assert final["returncode"] == 0, final["message"]
    plan = json.loads(Path(final["log_file"]).read_text().strip().splitlines()[-1])
    assert (plan["mode"], plan["source"]) == ("base", str(tiny_base / "model.pth"))


# --- old flag spellings -------------------------------------------------------------------------------------
def test_old_flag_spellings_of_the_popular_webui_are_accepted(tmp_path):
    """`--out_path` and `--grad_acumm` for gpt_train.py, `--out_path` for webui.py and formatter.py."""
    from utils.data.cli import build_parser as formatter_parser
    from utils.options import TrainOptions, from_namespace
    from utils.training.cli import build_parser as train_parser
    from utils.webui.app import build_parser as webui_parser

    args = train_parser().parse_args(["--train_csv", "t.csv", "--eval_csv", "e.csv", "--out_path", str(tmp_path),
                                      "--grad_acumm", "4"])
    opts = from_namespace(TrainOptions, args)
    assert (opts.output_path, opts.grad_accum) == (str(tmp_path), 4)
    assert webui_parser().parse_args(["--out_path", str(tmp_path)]).output_path == str(tmp_path)
    assert formatter_parser().parse_args(["import", "src", "--out_path", str(tmp_path)]).out_path == str(tmp_path)


# --- identical restores on every rank -----------------------------------------------------------------------
def assert_equal_state(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values, equal by torch.equal and ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where} keys differ"
        for key in a:
            assert_equal_state(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_every_rank_restores_the_same_state(reference_run, tiny_base, tiny_dataset, tmp_path):
    """torchrun, 2 ranks on CPU: each rank's weights, optimizer, scheduler and position just after restoring
    the checkpoint are the checkpoint's, so the ranks start alike."""
    source = reference_run.run_dir / "checkpoint_4.pth"
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "rank_restore.py"), str(tmp_path), "--train_csv", str(tiny_dataset.train_csv),
           "--eval_csv", str(tiny_dataset.eval_csv), "--output_path", str(tmp_path / "out"), "--base_model_dir",
           str(tiny_base), "--num_epochs", "2", "--batch_size", "2", "--custom_model", str(source), "--max_steps", "4"]
    done = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"restored_rank{rank}.pth", weights_only=True) for rank in (0, 1))
    assert_equal_state(first, second, "rank 0 vs rank 1")
    saved = torch.load(source, weights_only=True, mmap=True)
    weights = {k.removeprefix("module."): v for k, v in first["model"].items()}  # DDP's wrapper, if any
    assert_equal_state(weights, saved["model"], "model")
    assert_equal_state(first["optimizer"], saved["optimizer"], "optimizer")
    assert_equal_state(first["scheduler"], saved["scheduler"], "scheduler")
    assert (first["position"]["updates"], first["position"]["epochs_done"]) == (saved["step"], saved["epoch"])

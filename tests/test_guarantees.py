"""README's promises that no other test checks, one test each, through the interface README names: Ctrl-C on
the WebUI stops its training after a save, the grad scaler is restored on resume, /start_training fills in the
dataset, language and base folder, the old flag spellings on both commands, and identical restores on every rank
of a multi-process launch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

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
def webui_work(tiny_dataset, folder: Path, language: str = "en") -> Path:
    """A WebUI work folder whose dataset/ holds the test bed's CSVs and clips, and `language` in lang.txt."""
    dataset = folder / "dataset"
    dataset.mkdir(parents=True)
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        (dataset / name).write_bytes((tiny_dataset.folder / name).read_bytes())
    (dataset / "wavs").symlink_to(tiny_dataset.folder / "wavs")
    (dataset / "lang.txt").write_text(f"{language}\n")
    return folder


SERVING = "To create a public link"  # what Gradio prints once its startup is over (the URL comes before it)


def start_webui(log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`python webui.py --port 0 FLAGS` (the first free port from 7860) in a process group of its own, as a
    terminal gives it: the process and the URL it printed, once its startup is over (a Ctrl-C before that
    interrupts Gradio's start, not the served WebUI)."""
    with open(log, "w") as out:
        webui = subprocess.Popen([sys.executable, str(ROOT / "webui.py"), "--port", "0", *flags], cwd=ROOT,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    wait_for(lambda: SERVING in log.read_text() or webui.poll() is not None, timeout=120)
    urls = [line.split()[-1] for line in log.read_text().splitlines() if "Running on local URL:" in line]
    assert urls, f"webui.py ended ({webui.poll()}) without serving: {log.read_text()[-2000:]}"
    return webui, urls[0].rstrip("/") + "/"


def stop_webui(webui: subprocess.Popen) -> int:
    """Ctrl-C in the WebUI's terminal (SIGINT to its process group); its exit status once it has ended."""
    os.killpg(webui.pid, signal.SIGINT)
    return webui.wait(timeout=180)


def test_ctrl_c_on_the_webui_stops_its_training_job_after_a_save(tiny_base, tiny_dataset, tmp_path):
    """`python webui.py`, a training started through /start_training, then Ctrl-C in the WebUI's terminal: the
    WebUI stops its job (the trainer leads its own process group, so only the WebUI got the signal), which saves
    a checkpoint at the next update and ends with its final event (what the CLI writes last before exit 0)."""
    from gradio_client import Client

    work = webui_work(tiny_dataset, tmp_path / "work")
    webui, url = start_webui(tmp_path / "webui.log", "--output_path", str(work), "--base_model_dir", str(tiny_base))
    try:
        job = Client(url, verbose=False, download_files=False).predict(
            {"num_epochs": 2, "batch_size": 2, "save_step": 1000}, api_name="/start_training")
        assert job["accepted"], job["error"]
        progress, ticks = Path(job["progress_file"]), process_start_ticks(job["pid"])
        wait_for(lambda: any(e["event"] == "update" for e in complete_events(progress)))
    finally:
        code = stop_webui(webui)
    assert code == 0, (tmp_path / "webui.log").read_text()[-3000:]
    assert process_start_ticks(job["pid"]) != ticks  # the WebUI waited for its training process to end
    events = complete_events(progress)
    end = events[-1]
    assert (end["event"], end["reason"]) == ("end", "stop requested"), events[-3:]
    assert 1 <= end["step"] < end["total"] == 8  # stopped early, not run to the end
    assert classify_checkpoint(end["path"]).step == end["step"]
    assert "Stop requested: saving a checkpoint at the next update." in Path(job["log_file"]).read_text()


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
    """What the options sent to /start_training (gradio_client, a real server) leave out comes from the WebUI:
    its dataset's CSVs, lang.txt and base folder. The job is the real CLI with --dry_run, which reads those
    options and prints its plan."""
    from webui_server import client, serve

    from utils.webui.jobs import TrainingJobs
    from utils.webui.paths import WebUIConfig

    work = webui_work(tiny_dataset, tmp_path / "work", language="de")
    dataset = work / "dataset"
    jobs = TrainingJobs(command=[sys.executable, "-u", str(ROOT / "utils" / "gpt_train.py"), "--dry_run", "--json"])
    server = serve(WebUIConfig(output=work, base_dir=tiny_base), jobs)
    try:
        status = client(server).predict({"max_steps": 3}, api_name="/start_training")
        assert status["accepted"], status["error"]
        final = jobs.wait(timeout=120)
    finally:
        server.app.close()
    argv = status["command"]
    given = {flag: argv[argv.index(flag) + 1] for flag in argv if flag.startswith("--") and flag != "--dry_run"
             and flag != "--json"}
    assert given == {"--train_csv": str(dataset / "metadata_train.csv"),
                     "--eval_csv": str(dataset / "metadata_eval.csv"), "--output_path": str(work),
                     "--base_model_dir": str(tiny_base), "--language": "de", "--max_steps": "3",
                     "--progress_jsonl": status["progress_file"]}
    assert final["returncode"] == 0, final["message"]
    plan = json.loads(Path(final["log_file"]).read_text().strip().splitlines()[-1])
    assert (plan["mode"], plan["source"]) == ("base", str(tiny_base / "model.pth"))


# --- old flag spellings -------------------------------------------------------------------------------------
def test_old_flag_spellings_of_the_popular_webui_are_accepted(tiny_base, tiny_dataset, tmp_path):
    """`--out_path` and `--grad_acumm` on both commands: gpt_train.py trains into that folder with that many
    batches per update, and webui.py serves that work folder with that value in its Train tab."""
    import httpx

    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "utils/gpt_train.py", "--train_csv", str(tiny_dataset.train_csv),
                           "--eval_csv", str(tiny_dataset.eval_csv), "--base_model_dir", str(tiny_base),
                           "--batch_size", "2", "--max_steps", "1", "--out_path", str(out), "--grad_acumm", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (saved,) = out.glob("run/training/*/checkpoint_1.pth")
    assert torch.load(saved, weights_only=True, mmap=True)["run_state"]["batches_done"] == 2  # 1 update, 2 batches

    work = tmp_path / "webui_work"
    webui, url = start_webui(tmp_path / "webui.log", "--out_path", str(work), "--grad_acumm", "3",
                             "--base_model_dir", str(tiny_base))
    try:
        config = httpx.get(f"{url}config", timeout=60).json()
    finally:
        code = stop_webui(webui)
    assert code == 0, (tmp_path / "webui.log").read_text()[-3000:]
    props = [c["props"] for c in config["components"]]
    assert [p["value"] for p in props if p.get("elem_id") == "opt-grad_accum"] == [3]
    assert any(f"Work folder: `{work}`" in str(p.get("value")) for p in props)
    assert [p["value"] for p in props if p.get("elem_id") == "opt-output_path"] == [str(work)]


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

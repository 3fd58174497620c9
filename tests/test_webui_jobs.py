"""The WebUI's job manager and path rule, fast: a stand-in CLI that speaks the real one's JSON lines.

The real CLI runs in tests/test_webui.py; here a 30-line script replays its events so that state changes,
one-job-at-a-time under concurrent clicks, Stop and failures are checked in seconds.
"""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from utils.options import TrainOptions, coerce, fields_of
from utils.webui.jobs import TrainingJobs, check_start
from utils.webui.paths import PathPolicy, PathRefused, WebUIConfig, is_loopback

FAKE_CLI = textwrap.dedent('''
    """Stand-in for utils/gpt_train.py: --language fail -> exit 1; else one update per --save_step ms."""
    import argparse, json, signal, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--train_csv", "--eval_csv", "--output_path", "--custom_model", "--language", "--progress_jsonl",
                 "--base_model_dir"):
        p.add_argument(flag)
    p.add_argument("--max_steps", type=int, default=3)
    p.add_argument("--save_step", type=int, default=20)
    a, _ = p.parse_known_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    def emit(**e):
        with open(a.progress_jsonl, "a") as f:
            f.write(json.dumps(e) + "\\n")
    if a.language == "fail":
        print("Error: --train_csv x.csv line 3 names clip.wav, which does not exist.", file=sys.stderr)
        sys.exit(1)
    run = a.output_path + "/run/training/fake"
    start = 4 if a.custom_model else 0
    emit(event="start", mode="resume" if start else "base", run_dir=run, step=start, total=a.max_steps, epoch=0,
         lr=1e-5, message="Resuming" if start else "Fine-tuning")
    step = start
    while step < a.max_steps:
        time.sleep(a.save_step / 1000)
        step += 1
        print(f"step {step}", flush=True)
        emit(event="update", step=step, total=a.max_steps, epoch=0, loss=7.0 - step / 10, avg_loss=7.0, lr=1e-5,
             eta_s=1.0)
        if step % 2 == 0:
            emit(event="eval", step=step, total=a.max_steps, epoch=0, eval_loss=6.5)
        if stop:
            break
    path = f"{run}/checkpoint_{step}.pth"
    emit(event="checkpoint", step=step, total=a.max_steps, epoch=0, path=path)
    emit(event="end", reason="stop requested" if stop else "completed", run_dir=run, step=step, path=path)
''')


@pytest.fixture
def work(tmp_path) -> Path:
    for name in ("train.csv", "eval.csv"):
        (tmp_path / name).write_text("audio_file|text|speaker_name\n")
    (tmp_path / "fake_cli.py").write_text(FAKE_CLI)
    return tmp_path


@pytest.fixture
def jobs(work):
    manager = TrainingJobs(command=[sys.executable, str(work / "fake_cli.py")], cwd=work)
    yield manager
    status = manager.status()
    if status["running"]:
        manager.stop()
        manager.wait(30)


def options(work: Path, **overrides) -> TrainOptions:
    values = dict(train_csv=str(work / "train.csv"), eval_csv=str(work / "eval.csv"), output_path=str(work / "out"))
    return TrainOptions(**{**values, **overrides})


def wait_for(jobs: TrainingJobs, condition, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status()
        if condition(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {jobs.status()}")


def test_a_job_runs_to_the_end_and_its_status_follows_the_events(jobs, work):
    started = jobs.start(options(work, max_steps=3, save_step=30))
    assert started["accepted"] and started["error"] is None
    assert started["state"] in ("starting", "running") and started["running"]
    status = wait_for(jobs, lambda s: not s["running"])
    assert (status["state"], status["returncode"], status["step"], status["total"]) == ("finished", 0, 3, 3)
    assert status["checkpoint"].endswith("checkpoint_3.pth") and status["eval_loss"] == 6.5
    assert status["loss"] == pytest.approx(6.7) and status["mode"] == "base" and status["start_step"] == 0
    assert "Finished" in status["message"]
    train, evals = jobs.history()
    assert [s for s, _ in train] == [1, 2, 3] and evals == [(2, 6.5)]
    assert "step 3" in jobs.log_tail()
    assert Path(status["progress_file"]).parent == work / "out" / "run" / "webui"
    assert "--progress_jsonl" in status["command"] and "--max_steps" in status["command"]


def test_a_resumed_job_reports_the_checkpoints_step_not_zero(jobs, work):
    jobs.start(options(work, custom_model=str(work / "train.csv"), max_steps=6, save_step=30))
    first = wait_for(jobs, lambda s: s["events"] > 0)
    assert first["start_step"] == 4 and first["step"] >= 4
    assert wait_for(jobs, lambda s: not s["running"])["step"] == 6


def test_stop_sends_sigterm_and_the_job_ends_stopped_with_exit_0(jobs, work):
    jobs.start(options(work, max_steps=10_000, save_step=50))
    wait_for(jobs, lambda s: s["step"] >= 1)
    stopping = jobs.stop()
    assert stopping["accepted"] and stopping["state"] in ("stopping", "stopped")
    status = wait_for(jobs, lambda s: not s["running"])
    assert (status["state"], status["returncode"]) == ("stopped", 0)
    assert status["checkpoint"].endswith(f"checkpoint_{status['step']}.pth")
    again = jobs.stop()
    assert not again["accepted"] and "No training job is running" in again["error"]


def test_a_restarted_webui_takes_over_the_running_job_and_can_stop_it(jobs, work):
    """The WebUI's process restarts while training goes on: the new one finds the job by its record, shows its
    progress and stops it; once the job has ended, there is nothing to take over."""
    started = jobs.start(options(work, max_steps=10_000, save_step=50))
    wait_for(jobs, lambda s: s["step"] >= 2)
    restarted = TrainingJobs(command=[sys.executable, str(work / "fake_cli.py")], cwd=work,
                             folder=work / "out" / "run" / "webui")
    assert restarted.adopt_running()
    status = wait_for(restarted, lambda s: s["step"] >= 3)
    assert (status["state"], status["pid"], status["mode"]) == ("running", started["pid"], "base")
    assert status["progress_file"] == started["progress_file"] and "--max_steps" in status["command"]
    assert [s for s, _ in restarted.history()[0]][:3] == [1, 2, 3] and "step 2" in restarted.log_tail()
    assert not restarted.start(options(work, max_steps=3))["accepted"]  # still one job at a time
    assert restarted.stop()["accepted"]
    final = wait_for(restarted, lambda s: not s["running"])
    assert (final["state"], final["returncode"]) == ("stopped", None)  # its exit status belonged to the old WebUI
    assert final["checkpoint"].endswith(f"checkpoint_{final['step']}.pth") and "Stopped at update" in final["message"]
    jobs.wait(30)
    assert not TrainingJobs(folder=work / "out" / "run" / "webui").adopt_running()


def test_a_job_record_whose_process_is_gone_or_reused_is_not_taken_over(work):
    import json
    import os

    folder = work / "out" / "run" / "webui"
    folder.mkdir(parents=True)
    (folder / "train-2026-01-01_00-00-00-000000.json").write_text(json.dumps(
        {"pid": os.getpid(), "start_ticks": 1, "argv": [], "progress": "p", "log": "l", "started": 0}))
    (folder / "train-2026-01-02_00-00-00-000000.json").write_text("{not json")
    assert not TrainingJobs(folder=folder).adopt_running()


def test_a_second_start_while_one_runs_is_refused_with_a_message(jobs, work):
    assert jobs.start(options(work, max_steps=10_000, save_step=50))["accepted"]
    second = jobs.start(options(work, max_steps=3))
    assert not second["accepted"]
    assert "already" in second["error"] and second["running"]


def test_concurrent_starts_start_exactly_one_job(jobs, work):
    barrier = threading.Barrier(8)
    results: list[dict] = []

    def click() -> None:
        barrier.wait()
        results.append(jobs.start(options(work, max_steps=10_000, save_step=50)))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["accepted"] for r in results) == 1
    assert {r["pid"] for r in results} == {jobs.status()["pid"]}
    assert len(list((work / "out" / "run" / "webui").glob("*.jsonl"))) == 1


def test_a_failing_job_shows_the_clis_error_sentence(jobs, work):
    jobs.start(options(work, language="fail"))
    status = wait_for(jobs, lambda s: not s["running"])
    assert (status["state"], status["returncode"]) == ("failed", 1)
    assert "line 3 names clip.wav" in status["message"]
    assert jobs.start(options(work, max_steps=1, save_step=1))["accepted"], "a failed job does not block the next"


def test_starts_the_cli_would_refuse_are_refused_before_any_process(jobs, work):
    for bad, needle in [
        (options(work, train_csv=str(work / "missing.csv")), "missing.csv does not exist"),
        (options(work, custom_model=str(work / "nope.pth")), "nope.pth does not exist"),
        (options(work, num_epochs=0), "--num_epochs"),
        (options(work, progress_jsonl=str(work / "p.jsonl")), "--progress_jsonl"),
        (options(work, base_model_dir=str(work / "no_base")), "no_base does not exist"),
    ]:
        status = jobs.start(bad)
        assert not status["accepted"] and needle in status["error"]
        assert status["state"] == "idle"
    assert not (work / "out" / "run" / "webui").exists()


def test_check_start_accepts_good_options(work):
    check_start(options(work))


# --- the path rule ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.4", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
    assert WebUIConfig(Path("o"), Path("b"), host=host).restricted is not loopback


def test_shared_ui_refuses_paths_outside_the_work_folders_and_links_out_of_them(tmp_path):
    out, base, elsewhere = tmp_path / "out", tmp_path / "base", tmp_path / "elsewhere"
    for d in (out, base, elsewhere):
        d.mkdir()
    (out / "escape").symlink_to(elsewhere)
    shared = PathPolicy.for_config(WebUIConfig(out, base, host="0.0.0.0"))
    local = PathPolicy.for_config(WebUIConfig(out, base))
    assert shared.check(out / "a.csv", "CSV") == (out / "a.csv").resolve()
    assert shared.check(base / "model.pth", "Model") == (base / "model.pth").resolve()
    for outside in (elsewhere / "a.csv", out / "escape" / "a.csv", out / ".." / "elsewhere", "/etc/passwd"):
        with pytest.raises(PathRefused, match="outside the work folders"):
            shared.check(outside, "CSV")
        assert local.check(outside, "CSV").is_absolute()
    with pytest.raises(PathRefused, match="--custom_model"):
        shared.check_options({"train_csv": str(out / "t.csv"), "eval_csv": str(out / "e.csv"),
                              "output_path": str(out), "custom_model": "/etc/passwd"})


def test_options_from_json_are_coerced_or_refused_by_name(tmp_path):
    policy = PathPolicy()
    opts = policy.check_options({"train_csv": "t.csv", "eval_csv": "e.csv", "output_path": str(tmp_path),
                                 "num_epochs": "12", "lr": "1e-5", "max_steps": 7.0, "restart": "false",
                                 "vocab": "", "custom_model": None})
    assert (opts.num_epochs, opts.lr, opts.max_steps, opts.restart, opts.vocab) == (12, 1e-5, 7, False, None)
    with pytest.raises(ValueError, match="--batch_size"):
        coerce(fields_of(TrainOptions)["batch_size"], "two")
    with pytest.raises(ValueError, match="Unknown training option"):
        policy.check_options({"train_csv": "t", "eval_csv": "e", "output_path": "o", "epochs": 3})
    escaping = policy.check_options({"train_csv": "t", "eval_csv": "e", "output_path": "o", "run_name": "../../x"})
    with pytest.raises(ValueError, match="--run_name"):  # refused by the one options check, before any job starts
        check_start(escaping)


# --- how a status reads on the page -----------------------------------------------------------------------------
def test_loss_table_always_has_both_kinds_train_first():
    from utils.webui.tabs.train_view import loss_frame

    assert loss_frame([], []) is None
    frame = loss_frame([], [(4, 6.5)])
    assert list(frame["kind"]) == ["train", "eval"] and frame["loss"].isna().tolist() == [True, False]
    frame = loss_frame([(5, 7.0), (6, 6.9)], [])
    assert list(frame["kind"]) == ["train", "train", "eval"] and frame["update"].tolist() == [5, 6, 5]


def test_progress_html_carries_state_and_steps_for_scripts():
    from utils.webui.jobs import idle_status
    from utils.webui.tabs.train_view import progress_html

    page = progress_html(idle_status())
    assert 'data-state="idle"' in page and 'data-step="0"' in page and "<progress" not in page
    running = {**idle_status(), "state": "running", "running": True, "mode": "resume", "start_step": 4, "step": 6,
               "total": 10, "epoch": 1, "loss": 6.9, "eta_s": 75, "message": "Resuming <x>", "checkpoint": "/r/c.pth"}
    page = progress_html(running)
    assert 'data-start-step="4"' in page and '<progress value="6" max="10"' in page
    assert "update 6 / 10" in page and "ETA 0:01:15" in page and "Resuming &lt;x&gt;" in page


def test_a_missing_browser_is_a_failure_that_names_the_installer(monkeypatch):
    from tools import screenshots

    monkeypatch.setattr(screenshots, "chromium_path", lambda: None)
    assert "bash tools/install_browser.sh" in screenshots.missing_browser()

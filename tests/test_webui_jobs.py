"""The WebUI's job manager and path rule, fast: a stand-in CLI that speaks the real one's JSON lines.

The real CLI runs in tests/test_webui.py; here a 30-line script replays its events so that state changes,
one-job-at-a-time under concurrent clicks, Stop and failures are checked in seconds. Restarts after a crash run
the real CLI on the test bed (`trainer_jobs`): a killed trainer, Stop, a refused start, a divergence stop.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import assert_same_training_state, train_options
from webui_server import wait_for

from utils.options import TrainOptions, coerce, fields_of
from utils.webui.jobs import TrainingJobs, check_start
from utils.webui.paths import PathPolicy, PathRefused, WebUIConfig, is_loopback
from utils.webui.restarts import is_crash

FAKE_CLI = textwrap.dedent('''
    """Stand-in for utils/gpt_train.py: --language fail -> exit 1; --language crash -> SIGKILL after the first
    update, leaving a child (a data loader worker, say) that holds the inherited jobs lock for 3 s; else one
    update per --save_step ms."""
    import argparse, json, os, signal, sys, time
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
        if a.language == "crash":
            if os.fork() == 0:
                time.sleep(3)
                os._exit(0)
            os.kill(os.getpid(), signal.SIGKILL)
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
    assert not restarted.stop_own() and restarted.status()["state"] == "running"  # Ctrl-C leaves it training
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


def test_stop_while_a_crashed_job_waits_to_restart_cancels_the_restart(jobs, work):
    """The restart waits for the jobs lock (a crashed trainer's workers may hold it a moment): Stop meanwhile means
    no restart, and the job ends stopped."""
    import fcntl

    assert jobs.start(options(work, language="crash", max_steps=10), restarts=2)["accepted"]
    waiting = wait_for(jobs, lambda s: s["state"] not in ("starting", "running"))
    assert (waiting["state"], waiting["running"]) == ("restarting", True), waiting["message"]
    assert "killed by signal 9 (SIGKILL) at update 1" in waiting["message"]
    assert "restart 1 of 2" in waiting["message"]
    assert jobs.stop()["accepted"]
    with open(work / "out" / "run" / "webui" / "train.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks until the stand-in's child has let go of the lock
    time.sleep(1.5)  # the watcher retries every 0.5 s
    status = jobs.status()
    assert (status["state"], status["restarts"]) == ("stopped", 0) and "Stop was asked before it restarted" in (
        status["message"])


# --- restart after a crash: the real CLI on the test bed -------------------------------------------------------
JOB_TIMEOUT_S = 300


@pytest.fixture
def trainer_jobs(tmp_path):
    """A job manager running the real `python utils/gpt_train.py`."""
    manager = TrainingJobs(folder=tmp_path / "webui_jobs")
    yield manager
    if manager.status()["running"]:
        manager.stop()
        manager.wait(JOB_TIMEOUT_S)


def ended(jobs: TrainingJobs) -> dict:
    """The status once the trainer process has ended: finished, stopped, failed, or restarting (a crash)."""
    return wait_for(jobs, lambda s: s["state"] not in ("starting", "running", "stopping") or s["restarts"] > 0,
                    JOB_TIMEOUT_S)


def trainer_processes(status: dict) -> int:
    """How many trainer processes the job started: one per start event in its progress file."""
    return Path(status["progress_file"]).read_text().count('"event": "start"')


@pytest.mark.slow
def test_a_killed_trainer_restarts_from_its_newest_checkpoint_and_ends_like_an_uninterrupted_run(
        trainer_jobs, reference_run, tiny_base, tiny_dataset, tmp_path):
    """SIGKILL after a checkpoint: the job restarts from the run's newest checkpoint, in the same run folder, and
    ends at the uninterrupted run's final step with a bit-identical final state; the page shows the restart."""
    from utils.webui.tabs.train_view import progress_html

    opts = train_options(tiny_base, tiny_dataset, tmp_path / "out", save_step=2)
    assert trainer_jobs.start(opts, restarts=2)["accepted"]
    saved = wait_for(trainer_jobs, lambda s: s["checkpoint"] is not None or not s["running"], JOB_TIMEOUT_S)
    assert saved["state"] == "running", saved["message"]
    os.kill(saved["pid"], signal.SIGKILL)
    done = trainer_jobs.wait(JOB_TIMEOUT_S)
    assert done["state"] == "finished", done["message"]
    assert (done["restarts"], done["max_restarts"], trainer_processes(done)) == (1, 2, 2)
    crash = done["crashes"][0]
    assert crash["returncode"] == -signal.SIGKILL and "Saved checkpoint_" in crash["log_tail"]
    assert crash["resumed_from"], "the restart continued from no checkpoint"
    resumed = Path(crash["resumed_from"])
    assert resumed.parent == Path(saved["run_dir"]) == Path(done["run_dir"])  # written on in its own run folder
    assert done["start_step"] == int(resumed.stem.removeprefix("checkpoint_")) >= 2
    assert done["step"] == reference_run.step == 8
    assert_same_training_state(Path(done["checkpoint"]), reference_run.run_dir / "checkpoint_8.pth")
    page = progress_html(done)
    assert "Restarted 1 of 2 times after a crash" in page and "killed by signal 9 (SIGKILL)" in page
    assert 'data-restarts="1"' in page and "Saved checkpoint_" in page


@pytest.mark.slow
def test_stop_and_force_stop_are_not_restarted(trainer_jobs, tiny_base, tiny_dataset, tmp_path):
    """Stop saves and exits 0; Force stop ends the trainer with SIGKILL: neither is a crash."""
    opts = train_options(tiny_base, tiny_dataset, tmp_path / "out", num_epochs=100)
    assert trainer_jobs.start(opts, restarts=3)["accepted"]
    wait_for(trainer_jobs, lambda s: s["step"] >= 1 or not s["running"], JOB_TIMEOUT_S)
    assert trainer_jobs.stop()["accepted"]
    stopped = ended(trainer_jobs)
    assert (stopped["state"], stopped["returncode"], stopped["restarts"]) == ("stopped", 0, 0), stopped["message"]
    time.sleep(1)  # a restart would have begun by now
    assert trainer_processes(trainer_jobs.status()) == 1 and not trainer_jobs.status()["running"]

    trainer_jobs.stop_grace_s = 0  # Force stop at once
    assert trainer_jobs.start(opts, restarts=3)["accepted"]
    wait_for(trainer_jobs, lambda s: s["step"] >= 1 or not s["running"], JOB_TIMEOUT_S)
    trainer_jobs.stop()
    assert trainer_jobs.force_stop()["accepted"]
    forced = ended(trainer_jobs)
    assert (forced["state"], forced["returncode"], forced["restarts"]) == ("stopped", -signal.SIGKILL, 0)
    time.sleep(1)
    assert trainer_processes(trainer_jobs.status()) == 1 and not trainer_jobs.status()["running"]


def test_a_start_refused_for_bad_input_is_not_restarted(trainer_jobs, tiny_base, tiny_dataset, tmp_path):
    """A CSV naming a clip that does not exist: the CLI refuses it (exit 1) before any start event."""
    (tmp_path / "wavs").symlink_to(tiny_dataset.folder / "wavs")  # the CSV's paths are relative to it
    bad = tmp_path / "bad_train.csv"
    bad.write_text(tiny_dataset.train_csv.read_text() + "wavs/missing.wav|hello there.|speaker\n")
    opts = train_options(tiny_base, tiny_dataset, tmp_path / "out", train_csv=str(bad))
    assert trainer_jobs.start(opts, restarts=3)["accepted"]
    done = ended(trainer_jobs)
    assert (done["state"], done["returncode"], done["restarts"]) == ("failed", 1, 0)
    assert "missing.wav" in done["message"] and trainer_processes(done) == 0
    time.sleep(1)
    assert not trainer_jobs.status()["running"] and trainer_jobs.status()["pid"] == done["pid"]


@pytest.mark.slow
def test_a_divergence_stop_exit_3_is_not_restarted(trainer_jobs, tiny_base, tmp_path):
    """Every training clip poisoned with NaN: the NaN guard stops the run as diverged (exit 3), which a restart
    would only repeat."""
    from test_low_vram import poison

    from utils import testbed

    data = testbed.build_dataset(tmp_path / "poisoned")
    for clip in data.clips[2:]:  # the training clips; the eval clips stay clean
        poison(clip)
    opts = train_options(tiny_base, data, tmp_path / "out", max_bad_updates=2)
    assert trainer_jobs.start(opts, restarts=3)["accepted"]
    done = ended(trainer_jobs)
    assert (done["state"], done["returncode"], done["restarts"]) == ("failed", 3, 0), done["message"]
    assert "Training diverged" in done["message"] and trainer_processes(done) == 1
    time.sleep(1)
    assert not trainer_jobs.status()["running"]


@pytest.mark.parametrize(("code", "started", "stop_asked", "crash"), [
    (-signal.SIGKILL, True, False, True),  # killed (the out-of-memory killer sends SIGKILL)
    (1, True, False, True),  # an unexpected exception after training started
    (-signal.SIGSEGV, True, False, True),
    (1, False, False, False),  # refused before any start event: bad input
    (-signal.SIGKILL, True, True, False),  # Force stop
    (3, True, False, False),  # divergence stop
    (0, True, False, False),
    (-signal.SIGTERM, True, False, False),  # a stop asked from outside the page
    (130, True, False, False),
])
def test_which_ends_are_crashes(code, started, stop_asked, crash):
    assert is_crash(code, started, stop_asked) is crash


def test_restarts_setting_is_checked_by_name_and_passed_to_the_job(jobs, work):
    from utils.webui.api import api_start_training
    from utils.webui.context import WebUIContext

    ctx = WebUIContext.create(WebUIConfig(output=work / "out", base_dir=work / "base"), jobs)
    given = {"train_csv": str(work / "train.csv"), "eval_csv": str(work / "eval.csv"), "max_steps": 1}
    for bad in (-1, 2.5, "many", 101):
        refused = api_start_training(ctx, {**given, "restarts": bad})
        assert not refused["accepted"] and "restarts (Restart after a crash) must be a whole number" in refused["error"]
    assert api_start_training(ctx, given)["max_restarts"] == 3  # the default
    jobs.wait(30)
    status = api_start_training(ctx, {**given, "restarts": 0})
    assert status["accepted"] and status["max_restarts"] == 0 and "--restarts" not in status["command"]


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


def test_reference_clips_of_a_shared_ui_are_only_those_inside_the_work_folders(tmp_path):
    """The Test tab's clip list: a restricted WebUI lists only CSV audio inside the work folders (an absolute
    path, a ../ path or a link out of them is left out); on loopback every existing clip is listed."""
    from utils.webui.context import dataset_clips

    out, base, elsewhere = tmp_path / "out", tmp_path / "base", tmp_path / "elsewhere"
    dataset = out / "dataset"
    for d in (dataset / "wavs", base, elsewhere):
        d.mkdir(parents=True)
    for f in (dataset / "wavs" / "inside.wav", elsewhere / "abs.wav", elsewhere / "up.wav", elsewhere / "linked.wav"):
        f.write_bytes(b"RIFF")
    (dataset / "wavs" / "link.wav").symlink_to(elsewhere / "linked.wav")
    rows = ["wavs/inside.wav", str(elsewhere / "abs.wav"), "../../elsewhere/up.wav", "wavs/link.wav", "wavs/gone.wav"]
    (dataset / "metadata_train.csv").write_text("audio_file|text|speaker_name\n" + "".join(
        f"{row}|hello there.|speaker\n" for row in rows))
    shared = PathPolicy.for_config(WebUIConfig(out, base, host="0.0.0.0"))
    local = PathPolicy.for_config(WebUIConfig(out, base))
    assert [Path(path).name for _, path in dataset_clips(dataset, shared)] == ["inside.wav"]
    assert [Path(path).name for _, path in dataset_clips(dataset, local)] == ["inside.wav", "abs.wav", "up.wav",
                                                                             "linked.wav"]


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

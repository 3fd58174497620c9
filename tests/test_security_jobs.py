"""Job control that cannot be fooled (issue 17 item 8): a stand-in trainer run by the WebUI's job manager, one job
at a time across two WebUI processes, takeover only of our own trainer, and Force stop of its process group.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from webui_server import wait_for

from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig

FAKE_TRAINER = textwrap.dedent('''
    """A stand-in trainer: one update every 50 ms; it starts a child; --language stubborn ignores SIGTERM and
    leaves an orphan in its process group (a process whose parent exited, out of reach of a walk down its tree)."""
    import argparse, json, signal, subprocess, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--train_csv", "--eval_csv", "--output_path", "--language", "--progress_jsonl", "--max_steps"):
        p.add_argument(flag)
    a, _ = p.parse_known_args()
    stop = []
    signal.signal(signal.SIGTERM, (lambda *_: None) if a.language == "stubborn" else (lambda *_: stop.append(1)))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    orphan = None
    if a.language == "stubborn":
        parent = subprocess.run([sys.executable, "-c", "import subprocess, sys; print(subprocess.Popen("
                                 "[sys.executable, '-c', 'import time; time.sleep(60)'], "
                                 "stdout=subprocess.DEVNULL).pid)"],
                                stdout=subprocess.PIPE, text=True, check=True)  # the orphan keeps no pipe open
        orphan = int(parent.stdout)
    def emit(**e):
        with open(a.progress_jsonl, "a") as f:
            f.write(json.dumps(e) + "\\n")
    emit(event="start", mode="base", run_dir=a.output_path, step=0, total=10000, epoch=0, lr=1e-5, message="go",
         child=child.pid, orphan=orphan)
    step = 0
    while not stop:
        time.sleep(0.05)
        step += 1
        emit(event="update", step=step, total=10000, epoch=0, loss=1.0, avg_loss=1.0, lr=1e-5, eta_s=1.0)
    child.kill()
    emit(event="end", reason="stop requested", run_dir=a.output_path, step=step, path=None)
''')


@pytest.fixture
def jobs_home(tmp_path):
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    for name in ("train.csv", "eval.csv"):
        (tmp_path / name).write_text("audio_file|text|speaker_name\n")
    return tmp_path


def fake_manager(home: Path, **kwargs) -> TrainingJobs:
    return TrainingJobs(command=[sys.executable, str(home / "fake_trainer.py")], cwd=home,
                        folder=home / "webui_out" / "run" / "webui", **kwargs)


def webui_jobs(home: Path) -> TrainingJobs:
    """The job manager of a WebUI on <home>/webui_out, set up as a starting WebUI sets it up (WebUIContext)."""
    from utils.webui.context import WebUIContext

    jobs = TrainingJobs(command=[sys.executable, str(home / "fake_trainer.py")], cwd=home)
    return WebUIContext.create(WebUIConfig(output=home / "webui_out", base_dir=home), jobs).jobs


def fake_options(home: Path, **overrides):
    from utils.options import TrainOptions

    values = dict(train_csv=str(home / "train.csv"), eval_csv=str(home / "eval.csv"),
                  output_path=str(home / "elsewhere"))
    return TrainOptions(**{**values, **overrides})


SECOND_WEBUI = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from utils.options import TrainOptions
    from utils.webui.jobs import TrainingJobs
    from utils.webui.paths import WebUIConfig
    home = Path(sys.argv[2])
    jobs = TrainingJobs(command=[sys.executable, str(home / "fake_trainer.py")], cwd=home)
    jobs.attach(WebUIConfig(output=home / "webui_out", base_dir=home).jobs_dir)  # as WebUIContext.create does
    opts = TrainOptions(train_csv=str(home / "train.csv"), eval_csv=str(home / "eval.csv"),
                        output_path=str(home / "elsewhere2"))
    started = jobs.start(opts)
    adopted = jobs.adopt_running()
    print(json.dumps({"accepted": started["accepted"], "error": started["error"], "adopted": adopted,
                      "pid": jobs.status()["pid"]}))
""")


def test_one_job_across_two_webui_processes_and_records_stay_in_the_webui_folder(jobs_home):
    first = webui_jobs(jobs_home)
    started = first.start(fake_options(jobs_home))
    assert started["accepted"], started
    try:
        wait_for(first, lambda s: s["step"] >= 1)
        folder = jobs_home / "webui_out" / "run" / "webui"
        assert Path(started["progress_file"]).parent == folder and list(folder.glob("train-*.json"))
        assert not (jobs_home / "elsewhere" / "run" / "webui").exists()
        second = subprocess.run([sys.executable, "-c", SECOND_WEBUI, str(ROOT), str(jobs_home)], capture_output=True,
                                text=True, timeout=60, check=True)
        answer = json.loads(second.stdout)
        assert not answer["accepted"] and "another WebUI" in answer["error"], answer
        assert answer["adopted"] and answer["pid"] == started["pid"], answer  # the restarted WebUI finds it
    finally:
        first.stop()
        first.wait(30)
    again = webui_jobs(jobs_home)
    assert again.start(fake_options(jobs_home))["accepted"], "the lock ends with the job"
    again.stop()
    again.wait(30)


def test_takeover_needs_our_trainers_command_line_and_files_in_our_folder(jobs_home):
    from utils.procinfo import process_start_ticks
    from utils.webui.jobs import process_cmdline

    folder = jobs_home / "webui_out" / "run" / "webui"
    folder.mkdir(parents=True)
    command = [sys.executable, str(jobs_home / "fake_trainer.py")]
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = process_start_ticks(stranger.pid)
        record = {"pid": stranger.pid, "start_ticks": ticks, "argv": [*command, "--progress_jsonl", "p"],
                  "progress": str(folder / "a.jsonl"), "log": str(folder / "a.log"), "started": 0}
        (folder / "train-2026-01-01_00-00-00-000001.json").write_text(json.dumps(record))
        assert not fake_manager(jobs_home).adopt_running(), "a live process that is not our trainer"
        record["argv"] = process_cmdline(stranger.pid)  # what it really runs: the command line matches the record
        (folder / "train-2026-01-01_00-00-00-000001.json").write_text(json.dumps(record))
        assert not fake_manager(jobs_home).adopt_running(), "a command line that is not our trainer's"
        real = fake_manager(jobs_home)
        started = real.start(fake_options(jobs_home))
        wait_for(real, lambda s: s["step"] >= 1)
        good = json.loads(next(p for p in folder.glob("train-*.json") if "000001" not in p.name).read_text())
        for p in folder.glob("train-*.json"):
            p.unlink()
        elsewhere = jobs_home / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        (folder / "train-2026-01-01_00-00-00-000002.json").write_text(json.dumps(
            {**good, "progress": str(elsewhere / "x.jsonl"), "log": str(elsewhere / "x.log")}))
        assert not fake_manager(jobs_home).adopt_running(), "a record whose files lie outside the job folder"
        (folder / "train-2026-01-01_00-00-00-000003.json").write_text(json.dumps(good))
        assert fake_manager(jobs_home).adopt_running()
        real.stop()
        real.wait(30)
        assert started["accepted"]
    finally:
        stranger.kill()
        stranger.wait()


def test_a_stop_without_answer_offers_force_stop_which_kills_the_trainer_and_its_children(jobs_home):
    from utils.webui.jobs import _kill_group
    from utils.webui.tabs.train import poll_job

    jobs = fake_manager(jobs_home, stop_grace_s=1.0)
    try:
        _force_stop_the_stubborn_trainer(jobs, jobs_home, poll_job)
    finally:
        status = jobs.status()
        if status["running"]:
            _kill_group(status["pid"])


def _force_stop_the_stubborn_trainer(jobs: TrainingJobs, jobs_home: Path, poll_job) -> None:
    from utils.procinfo import process_start_ticks

    jobs.start(fake_options(jobs_home, language="stubborn"))
    wait_for(jobs, lambda s: s["step"] >= 1)
    events = [json.loads(line) for line in Path(jobs.status()["progress_file"]).read_text().splitlines()]
    child, orphan = events[0]["child"], events[0]["orphan"]
    assert not jobs.force_stop()["accepted"], "no Force stop before Stop"
    stopping = jobs.stop()
    assert stopping["state"] == "stopping" and not stopping["force_stop"]
    offered = wait_for(jobs, lambda s: s["force_stop"], timeout=10)
    assert all(said in offered["message"] for said in ("Force stop", "process group", "SIGKILL", "intact")), offered
    page = SimpleNamespace(jobs=jobs)  # all the Train tab's poll reads of the context here
    assert poll_job(page, ("stopping", offered["events"], None), None, None, None)[-1]["visible"] is True
    forced = jobs.force_stop()
    assert forced["accepted"], forced
    done = wait_for(jobs, lambda s: not s["running"], timeout=10)
    assert done["state"] == "stopped" and "Force-stopped (SIGKILL)" in done["message"], done
    deadline = time.monotonic() + 5
    while {process_start_ticks(child), process_start_ticks(orphan)} != {None} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start_ticks(child) is None, "the process the trainer started is killed too"
    assert process_start_ticks(orphan) is None, "and one left in its process group when its parent exited"

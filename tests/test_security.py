"""What a WebUI served to others guarantees (issue 17): a real Gradio server on 127.0.0.1 with the path policy on
(`--restrict_paths`), reached the way anyone who can reach it would (gradio_client for the API, the page's HTTP
queue for the tabs' handlers); the training CLI on hostile checkpoints; the job manager across processes.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT
from webui_server import HARMLESS_CLI, call_handler, client, serve, wait_for

from utils.checkpoints.classify import classify_checkpoint
from utils.checkpoints.keys import CheckpointError
from utils.webui.app import build_parser, config_from_args, warnings_for
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig, prepare_upload_dir

CLI = [sys.executable, str(ROOT / "utils" / "gpt_train.py")]
UNBINDABLE = "256.0.0.1"  # a WebUI that got past the check under test fails to serve at once, never hangs
MEMORY_MARGIN_KB = 500 * 1024  # the hostile file may cost at most 500 MB more than refusing an empty one


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="|", lineterminator="\n")
        writer.writerow(["audio_file", "text", "speaker_name"])
        writer.writerows((audio, text, "speaker") for audio, text in rows)
    return path


@pytest.fixture(scope="module")
def restricted(tiny_base, tmp_path_factory):
    """A loopback server started with --restrict_paths on an empty output folder; its CLI never trains."""
    out = tmp_path_factory.mktemp("restricted_out")
    s = serve(WebUIConfig(output=out, base_dir=tiny_base, restrict_paths=True), TrainingJobs(command=HARMLESS_CLI))
    yield s
    s.app.close()


@pytest.fixture(scope="module")
def outside(tiny_dataset) -> Path:
    """A real clip outside the restricted server's work folders."""
    return tiny_dataset.clips[0]


# --- 1. audio paths inside a CSV -----------------------------------------------------------------------------
def test_csv_audio_outside_the_work_folders_is_refused_by_line_and_nothing_is_copied(restricted, outside):
    out = restricted.ctx.config.output
    incoming = write_csv(out / "incoming" / "metadata_train.csv", [
        ("../incoming/ok.wav", "a line inside"), (str(outside), "an absolute path outside"),
        ("../../../../../../etc/hostname.wav", "a climb out")])
    (out / "incoming" / "lang.txt").write_text("en\n")
    report, _ = call_handler(restricted, "import_existing", str(incoming.parent), "coqui", "en")
    assert "metadata_train.csv line 3: audio" in report and "outside the work folders" in report, report
    assert not (out / "dataset" / "wavs").exists() or not any((out / "dataset" / "wavs").iterdir())

    # the dataset check and a training start refuse the same line, and the answer does not depend on whether
    # the outside file exists (nothing outside is looked at)
    write_csv(out / "dataset" / "metadata_train.csv", [(str(outside), "outside")])
    write_csv(out / "dataset" / "metadata_eval.csv", [(str(outside), "outside")])
    report, _ = call_handler(restricted, "check_dataset")
    assert "metadata_train.csv line 2: audio" in report and "outside the work folders" in report, report
    answers = []
    for audio in (outside, outside.with_name("no_such_clip.wav")):
        write_csv(out / "dataset" / "metadata_train.csv", [(str(audio), "outside")])
        status = client(restricted).predict({}, api_name="/start_training")
        assert not status["accepted"] and "line 2: audio" in status["error"], status
        answers.append(status["error"].replace(str(audio), "<audio>"))
    assert answers[0] == answers[1]
    assert restricted.ctx.jobs.status()["state"] == "idle"


# --- 2. the Vocabulary tab writes only <output>/vocab/<name>.json ---------------------------------------------
def test_vocabulary_tab_writes_only_its_own_folder_and_replaces_only_when_asked(restricted, tiny_base):
    out = restricted.ctx.config.output
    texts = ["ሰላም ነው። እንደምን አደርክ?", "ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ አገር ናት።"]
    dataset_csv = write_csv(out / "vocab_src" / "am.csv", [(f"wavs/{i}.wav", t) for i, t in enumerate(texts)])
    victim = out / "run" / "notes.txt"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("my notes")
    base = str(tiny_base / "vocab.json")
    for name in (str(victim), "../run/notes", "../../x"):
        summary, *_ = call_handler(restricted, "extend", base, str(dataset_csv), "am", name, True)
        assert "must be a plain name" in summary, summary
    assert victim.read_text() == "my notes"

    summary, *_, written = call_handler(restricted, "extend", base, str(dataset_csv), "am", "vocab_am", False)
    target = out / "vocab" / "vocab_am.json"
    assert written == str(target) and target.is_file(), summary
    target.write_text('{"edited": true}')
    summary, *_ = call_handler(restricted, "extend", base, str(dataset_csv), "am", "vocab_am", False)
    assert "already exists" in summary and target.read_text() == '{"edited": true}'
    summary, *_ = call_handler(restricted, "extend", base, str(dataset_csv), "am", "vocab_am", True)
    assert summary.startswith("Wrote") and "edited" not in target.read_text()


# --- 3. a tiny file that asks for gigabytes ----------------------------------------------------------------------
def hostile_checkpoint(path: Path, size: int = 1_500_000_000) -> Path:
    """A torch-format zip of a few hundred bytes whose pickle builds bytearray(size): a global both our reader
    and torch's weights_only loader allow."""

    class Big:
        def __reduce__(self):
            return (bytearray, (size,))

    with zipfile.ZipFile(path, "w") as z:
        # protocol 3: torch's weights_only loader would build it too (it refuses protocol 4's opcodes at once)
        z.writestr("archive/data.pkl", pickle.dumps({"model": {}, "optimizer": Big()}, protocol=3))
        z.writestr("archive/version", "3\n")
    return path


def peak_rss_of_cli(args: list[str]) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in KB) of the training CLI run as the only child of a fresh process."""
    probe = textwrap.dedent("""
        import json, resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        print(json.dumps([done.returncode, done.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
    """)
    result = subprocess.run([sys.executable, "-c", probe, *CLI, *args], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, check=True)
    code, stderr, rss = json.loads(result.stdout)
    return code, stderr, rss


def test_a_hostile_checkpoint_is_refused_by_the_cli_without_allocating(tiny_base, tiny_dataset, tmp_path):
    common = ["--train_csv", str(tiny_dataset.train_csv), "--eval_csv", str(tiny_dataset.eval_csv),
              "--base_model_dir", str(tiny_base), "--output_path", str(tmp_path / "out")]
    empty = tmp_path / "empty.pth"
    empty.touch()
    hostile = hostile_checkpoint(tmp_path / "hostile.pth")
    assert hostile.stat().st_size < 1000
    empty_code, empty_err, empty_rss = peak_rss_of_cli([*common, "--custom_model", str(empty)])
    code, err, rss = peak_rss_of_cli([*common, "--custom_model", str(hostile)])
    print(f"peak RSS {rss} KB refusing the hostile file, {empty_rss} KB refusing an empty one")
    assert rss <= empty_rss + MEMORY_MARGIN_KB, f"peak RSS {rss} KB refusing it vs {empty_rss} KB for an empty file"
    assert (empty_code, code) == (1, 1), (empty_err, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: Checkpoint {hostile} was refused"), err
    assert "Traceback" not in err


def test_uploads_over_the_size_cap_are_refused(tiny_base, tmp_path):
    import httpx

    args = build_parser().parse_args(["--output_path", str(tmp_path / "out"), "--base_model_dir", str(tiny_base),
                                      "--max_file_size", "10kb"])
    s = serve(config_from_args(args), TrainingJobs(command=HARMLESS_CLI))
    try:
        with httpx.Client(base_url=s.url, timeout=30) as http:
            small = http.post("gradio_api/upload", files={"files": ("a.wav", b"x" * 5_000)})
            big = http.post("gradio_api/upload", files={"files": ("b.wav", b"x" * 20_000)})
    finally:
        s.app.close()
    assert small.status_code == 200, small.text
    assert big.status_code == 413, big.text


# --- 4. one odd file in the listing --------------------------------------------------------------------------------
def two_pickles(path: Path, *, same_name: bool) -> Path:
    """A small weights-only checkpoint with a second data.pkl: under the same name (zipfile reads the last, torch
    the first) or in another folder."""
    import warnings

    torch.save({"model": {"gpt.text_embedding.weight": torch.zeros(10, 4)}}, path)
    other = pickle.dumps({"model": {"gpt.text_embedding.weight": 0}}, protocol=2)
    with zipfile.ZipFile(path, "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name: that is the point
        first = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        z.writestr(first if same_name else "other/data.pkl", other)
    return path


def test_an_odd_file_is_one_row_saying_why_and_the_rest_of_the_list_is_intact(restricted, reference_run, tiny_base):
    folder = restricted.ctx.config.output / "run" / "training" / "odd"
    folder.mkdir(parents=True)
    good = folder / "checkpoint_8.pth"
    os.link(reference_run.run_dir / "checkpoint_8.pth", good)
    torch.save({"model": {"gpt.text_embedding.weight": 7}}, folder / "not_a_tensor.pth")
    (folder / "empty.pth").touch()
    two_pickles(folder / "two_pickles.pth", same_name=False)
    rows = {Path(r["path"]).name: r for r in client(restricted).predict(str(folder), api_name="/list_checkpoints")}
    assert set(rows) == {"checkpoint_8.pth", "not_a_tensor.pth", "empty.pth", "two_pickles.pth"}
    assert rows["checkpoint_8.pth"]["mode"] == "resume" and rows["checkpoint_8.pth"]["step"] == 8
    assert "text embedding" in rows["not_a_tensor.pth"]["error"] and rows["not_a_tensor.pth"]["mode"] is None
    assert "is empty" in rows["empty.pth"]["error"]
    assert "2 data.pkl" in rows["two_pickles.pth"]["error"]
    assert all(r["describe"] == r["error"] for name, r in rows.items() if name != "checkpoint_8.pth")


def test_an_archive_with_two_pickles_is_refused_before_a_run_folder_is_made(tiny_base, tiny_dataset, tmp_path):
    same = two_pickles(tmp_path / "same_name.pth", same_name=True)
    with pytest.raises(CheckpointError, match=r"same_name/data\.pkl more than once"):
        classify_checkpoint(same)
    out = tmp_path / "out"
    done = subprocess.run([*CLI, "--train_csv", str(tiny_dataset.train_csv), "--eval_csv", str(tiny_dataset.eval_csv),
                           "--base_model_dir", str(tiny_base), "--output_path", str(out), "--custom_model", str(same)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1 and "more than once" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (out / "run" / "training").exists() or not any((out / "run" / "training").iterdir())


# --- 6. sign-in and --restrict_paths ------------------------------------------------------------------------------
def test_sign_in_is_required_of_api_clients_and_restrict_paths_works_on_loopback(tiny_base, tmp_path):
    from gradio_client import Client

    users = tmp_path / "users.txt"
    users.write_text("# who may sign in\nann:s3cret:with:colons\n\nbob:pw\n")
    args = build_parser().parse_args(["--output_path", str(tmp_path / "out"), "--base_model_dir", str(tiny_base),
                                      "--auth", "carl:pw2", "--auth_file", str(users), "--restrict_paths"])
    config = config_from_args(args)
    assert config.auth == (("carl", "pw2"), ("ann", "s3cret:with:colons"), ("bob", "pw"))
    config.output.mkdir()
    s = serve(config, TrainingJobs(command=HARMLESS_CLI))
    try:
        for auth in (None, ("ann", "wrong")):
            with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own types for a refused sign-in
                Client(s.url, verbose=False, download_files=False, auth=auth).predict(
                    str(tmp_path), api_name="/list_checkpoints")
        signed_in = client(s, auth=("ann", "s3cret:with:colons"))
        assert signed_in.predict(str(tmp_path / "out"), api_name="/list_checkpoints") == []
        refused = signed_in.predict("/etc", api_name="/list_checkpoints")
        assert isinstance(refused, dict) and "outside the work folders" in refused["error"], refused
    finally:
        s.app.close()


def test_sharing_without_sign_in_warns_and_bad_sign_ins_are_refused_by_name(tmp_path):
    shared = WebUIConfig(output=tmp_path, base_dir=tmp_path, host="0.0.0.0")
    assert any("no sign-in" in line for line in warnings_for(shared))
    assert not any("no sign-in" in line for line in warnings_for(WebUIConfig(tmp_path, tmp_path, share=True,
                                                                             auth=(("a", "b"),))))
    assert warnings_for(WebUIConfig(tmp_path, tmp_path, restrict_paths=True)) == []
    users = tmp_path / "users.txt"
    users.write_text("ann:pw\njust-a-name\n")
    done = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--auth_file", str(users), "--host", UNBINDABLE,
                           "--output_path", str(tmp_path / "out"), "--base_model_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and f"--auth_file {users} line 2 is not USER:PASSWORD" in done.stderr, done.stderr


# --- 7. the Whisper model box ----------------------------------------------------------------------------------
def test_the_whisper_box_takes_only_model_names_when_restricted(restricted, outside):
    recordings = restricted.ctx.config.output / "recordings"
    recordings.mkdir(exist_ok=True)
    shutil.copyfile(outside, recordings / "speech.wav")
    answers = []
    for model in ("/etc", "/no/such/folder", str(restricted.ctx.config.output)):
        report, _ = call_handler(restricted, "transcribe_recordings", None, str(recordings), "en", model, "cpu")
        assert "is not one of the model names" in report, report
        answers.append(report.replace(model, "<model>"))
    assert answers[0] == answers[1] == answers[2]
    assert not (restricted.ctx.config.output / "dataset" / "wavs" / "speech.wav").exists()


def test_quality_options_of_a_training_start_obey_the_policy(restricted, outside, tmp_path):
    """The voice to score against, the sentences file and the Whisper model of --quality_every are checked like
    every other path: a file outside the work folders, or a folder as Whisper model, is refused by name."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("hello there\n")
    dataset = restricted.ctx.config.output / "dataset"
    (dataset / "wavs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(outside, dataset / "wavs" / "inside.wav")
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        write_csv(dataset / name, [("wavs/inside.wav", "a clip inside the work folders")])
    for option, value, said in (("reference_wav", str(outside), "outside the work folders"),
                                ("quality_sentences", str(sentences), "outside the work folders"),
                                ("whisper_model", "/etc", "is not one of the model names")):
        status = client(restricted).predict({"quality_every": 10, option: value}, api_name="/start_training")
        assert not status["accepted"] and said in status["error"] and value in status["error"], status
    assert restricted.ctx.jobs.status()["state"] == "idle"


# --- 8. jobs ---------------------------------------------------------------------------------------------------------
FAKE_TRAINER = textwrap.dedent('''
    """A stand-in trainer: one update every 50 ms; --language stubborn ignores SIGTERM; it starts a child."""
    import argparse, json, signal, subprocess, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--train_csv", "--eval_csv", "--output_path", "--language", "--progress_jsonl", "--max_steps"):
        p.add_argument(flag)
    a, _ = p.parse_known_args()
    stop = []
    signal.signal(signal.SIGTERM, (lambda *_: None) if a.language == "stubborn" else (lambda *_: stop.append(1)))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    def emit(**e):
        with open(a.progress_jsonl, "a") as f:
            f.write(json.dumps(e) + "\\n")
    emit(event="start", mode="base", run_dir=a.output_path, step=0, total=10000, epoch=0, lr=1e-5, message="go",
         child=child.pid)
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
    home = Path(sys.argv[2])
    jobs = TrainingJobs(command=[sys.executable, str(home / "fake_trainer.py")], cwd=home,
                        folder=home / "webui_out" / "run" / "webui")
    opts = TrainOptions(train_csv=str(home / "train.csv"), eval_csv=str(home / "eval.csv"),
                        output_path=str(home / "elsewhere2"))
    started = jobs.start(opts)
    adopted = jobs.adopt_running()
    print(json.dumps({"accepted": started["accepted"], "error": started["error"], "adopted": adopted,
                      "pid": jobs.status()["pid"]}))
""")


def test_one_job_across_two_webui_processes_and_records_stay_in_the_webui_folder(jobs_home):
    first = fake_manager(jobs_home)
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
    again = fake_manager(jobs_home)
    assert again.start(fake_options(jobs_home))["accepted"], "the lock ends with the job"
    again.stop()
    again.wait(30)


def test_takeover_needs_our_trainers_command_line_and_files_in_our_folder(jobs_home):
    from utils.procinfo import process_start_ticks

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
    from utils.webui.jobs import _kill_tree
    from utils.webui.tabs.train import poll_job

    jobs = fake_manager(jobs_home, stop_grace_s=1.0)
    try:
        _force_stop_the_stubborn_trainer(jobs, jobs_home, poll_job)
    finally:
        status = jobs.status()
        if status["running"]:
            _kill_tree(status["pid"])


def _force_stop_the_stubborn_trainer(jobs: TrainingJobs, jobs_home: Path, poll_job) -> None:
    from utils.procinfo import process_start_ticks

    jobs.start(fake_options(jobs_home, language="stubborn"))
    wait_for(jobs, lambda s: s["step"] >= 1)
    events = [json.loads(line) for line in Path(jobs.status()["progress_file"]).read_text().splitlines()]
    child = events[0]["child"]
    assert not jobs.force_stop()["accepted"], "no Force stop before Stop"
    stopping = jobs.stop()
    assert stopping["state"] == "stopping" and not stopping["force_stop"]
    offered = wait_for(jobs, lambda s: s["force_stop"], timeout=10)
    assert "Force stop" in offered["message"] and "intact" in offered["message"]
    page = SimpleNamespace(jobs=jobs)  # all the Train tab's poll reads of the context here
    assert poll_job(page, ("stopping", offered["events"], None), None, None, None)[-1]["visible"] is True
    forced = jobs.force_stop()
    assert forced["accepted"], forced
    done = wait_for(jobs, lambda s: not s["running"], timeout=10)
    assert done["state"] == "stopped" and "Force-stopped (SIGKILL)" in done["message"], done
    deadline = time.monotonic() + 5
    while process_start_ticks(child) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start_ticks(child) is None, "the process the trainer started is killed too"


def test_the_upload_folder_must_be_our_own_private_folder(tmp_path, tiny_base):
    fresh = tmp_path / "uploads" / "gradio"
    assert prepare_upload_dir(fresh) == fresh.resolve() and (fresh.stat().st_mode & 0o777) == 0o700
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    if os.getuid() == 0:
        os.chown(foreign, 12345, 12345)
        with pytest.raises(ValueError, match="belongs to another user"):
            prepare_upload_dir(foreign)
    (tmp_path / "root_link").symlink_to("/")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "root_link")}
    done = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--output_path", str(tmp_path / "out"),
                           "--base_model_dir", str(tiny_base), "--host", UNBINDABLE], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 1 and "far too broad" in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- 9. the export is renamed into place ------------------------------------------------------------------------------
def test_a_failed_export_leaves_the_previous_ready_folder_whole(reference_run, tiny_dataset, tmp_path):
    from utils.voice.export import export_model

    ready = tmp_path / "ready"
    export_model(reference_run.run_dir / "checkpoint_4.pth", ready, reference_wav=tiny_dataset.clips[0])
    before = {p.name: p.read_bytes() for p in ready.iterdir()}
    with pytest.raises(FileNotFoundError):
        export_model(reference_run.run_dir / "checkpoint_8.pth", ready, reference_wav=tmp_path / "missing.wav")
    assert {p.name: p.read_bytes() for p in ready.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]
    result = export_model(reference_run.run_dir / "checkpoint_8.pth", ready)
    assert classify_checkpoint(result.model).mode == "base" and "reference.wav" not in {p.name for p in ready.iterdir()}

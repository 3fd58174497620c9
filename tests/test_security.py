"""What a WebUI served to others guarantees (issue 17): a real Gradio server on 127.0.0.1 with the path policy on
(`--restrict_paths`), reached the way anyone who can reach it would (gradio_client for the API, the page's HTTP
queue for the tabs' handlers); the training CLI on hostile checkpoints; the upload folder; durable run records
and exports. The job manager across processes: tests/test_security_jobs.py.
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
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from webui_server import HARMLESS_CLI, call_handler, client, serve, upload

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
    (out / "linked" / "wavs").mkdir(parents=True)
    (out / "linked" / "wavs" / "clip.wav").symlink_to(outside)  # a link inside, to a file outside
    linked = write_csv(out / "linked" / "metadata_train.csv", [("wavs/clip.wav", "a link out")])
    report, _ = call_handler(restricted, "import_existing", str(linked), "coqui", "en")
    assert "metadata_train.csv line 2: audio" in report and "outside the work folders" in report, report
    assert not (out / "dataset" / "wavs").exists() or not any((out / "dataset" / "wavs").iterdir())

    # the dataset check and a training start refuse the same line, and the answer does not depend on whether
    # the outside file exists (nothing outside is looked at)
    write_csv(out / "dataset" / "metadata_train.csv", [(str(outside), "outside")])
    write_csv(out / "dataset" / "metadata_eval.csv", [(str(outside), "outside")])
    report, _ = call_handler(restricted, "check_dataset")
    assert "metadata_train.csv line 2: audio" in report and "outside the work folders" in report, report
    notice = call_handler(restricted, "measure_clips", "")[3]  # the quality review listens to every clip
    assert "metadata_train.csv line 2: audio" in notice and "outside the work folders" in notice, notice
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
    done = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--max_file_size", "2 gigs", "--host", UNBINDABLE,
                           "--output_path", str(tmp_path / "out"), "--base_model_dir", str(tiny_base)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "--max_file_size 2 gigs is not a size such as 500mb" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


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


def corrupt_step(path: Path) -> Path:
    """A training checkpoint whose optimizer `step` record no longer matches its CRC: its structure reads, the
    step (read on demand) does not."""
    import struct

    torch.save({"model": {"gpt.text_embedding.weight": torch.zeros(10, 4)},
                "optimizer": [{"param_groups": [{}], "state": {0: {"step": torch.tensor(5.0)}}}]}, path)
    raw = path.read_bytes()
    at = raw.index(struct.pack("<f", 5.0))
    path.write_bytes(raw[:at] + struct.pack("<f", 6.0) + raw[at + 4:])
    return path


def test_an_odd_file_is_one_row_saying_why_and_the_rest_of_the_list_is_intact(restricted, reference_run, tiny_base):
    folder = restricted.ctx.config.output / "run" / "training" / "odd"
    folder.mkdir(parents=True)
    good = folder / "checkpoint_8.pth"
    os.link(reference_run.run_dir / "checkpoint_8.pth", good)
    torch.save({"model": {"gpt.text_embedding.weight": 7}}, folder / "not_a_tensor.pth")
    (folder / "empty.pth").touch()
    two_pickles(folder / "two_pickles.pth", same_name=False)
    corrupt_step(folder / "corrupt_step.pth")
    rows = {Path(r["path"]).name: r for r in client(restricted).predict(str(folder), api_name="/list_checkpoints")}
    assert set(rows) == {"checkpoint_8.pth", "not_a_tensor.pth", "empty.pth", "two_pickles.pth", "corrupt_step.pth"}
    assert rows["checkpoint_8.pth"]["mode"] == "resume" and rows["checkpoint_8.pth"]["step"] == 8
    assert "text embedding" in rows["not_a_tensor.pth"]["error"] and rows["not_a_tensor.pth"]["mode"] is None
    assert "is empty" in rows["empty.pth"]["error"]
    assert "2 data.pkl" in rows["two_pickles.pth"]["error"]
    assert "is not a readable PyTorch file" in rows["corrupt_step.pth"]["error"], rows["corrupt_step.pth"]
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


# --- 5. every number has bounds, the same for the CLI, the API and the Train tab ------------------------------------
def test_every_numeric_option_has_one_range_for_the_cli_the_api_and_the_train_tab(restricted, tiny_base, tiny_dataset,
                                                                                  tmp_path):
    import dataclasses

    import httpx

    from utils.options import TrainOptions, field_kind, range_text

    numeric = [f for f in dataclasses.fields(TrainOptions) if field_kind(f) in (int, float) or f.metadata["words"]]
    assert {"num_workers", "batch_size", "lr", "max_steps"} <= {f.name for f in numeric}
    shown = " ".join(subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                                    check=True).stdout.split())
    for f in numeric:
        assert f.metadata["low"] is not None and f.metadata["high"] is not None, f"--{f.name} has no range"
        assert f"({range_text(f)})" in shown, f"--help does not state --{f.name}'s range"

    out = tmp_path / "out"
    done = subprocess.run([*CLI, "--train_csv", str(tiny_dataset.train_csv), "--eval_csv", str(tiny_dataset.eval_csv),
                           "--base_model_dir", str(tiny_base), "--output_path", str(out), "--num_workers",
                           "1000000000"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "Error: --num_workers must be between 0 and 64, got 1000000000."
    assert not out.exists()

    none = str(restricted.ctx.config.output / "no_such.csv")  # the range is refused before the files are looked at
    for options, said in (({"num_workers": 1e9}, "--num_workers must be between 0 and 64, got 1000000000."),
                          ({"lr": "nan"}, "--lr must be between 1e-12 and 1, got nan."),
                          ({"save_step": 10**12}, "--save_step must be between 1 and 1000000000"),
                          ({"batch_size": 0}, "--batch_size must be auto or a number between 1 and 1024, got 0."),
                          ({"batch_size": "many"}, "--batch_size must be auto or a number (int), got 'many'.")):
        status = client(restricted).predict({"train_csv": none, "eval_csv": none, **options},
                                            api_name="/start_training")
        assert not status["accepted"] and said in status["error"], (options, status)
    assert restricted.ctx.jobs.status()["state"] == "idle"

    components = httpx.get(f"{restricted.url}config", timeout=30).json()["components"]
    boxes = {c["props"].get("elem_id"): c for c in components if c.get("props", {}).get("elem_id")}
    for f in numeric:
        if not f.metadata["ui"]:
            continue
        box = boxes[f"opt-{f.name}"]
        if f.metadata["words"]:  # batch_size: a text box, for 'auto'; its info states the range
            assert range_text(f) in box["props"]["info"], box
        else:
            assert (box["props"]["minimum"], box["props"]["maximum"]) == (f.metadata["low"], f.metadata["high"]), box


# --- 6. sign-in and --restrict_paths ------------------------------------------------------------------------------
def test_sign_in_is_required_of_api_clients_and_restrict_paths_works_on_loopback(tiny_base, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    users = tmp_path / "users.txt"
    users.write_text("# who may sign in\nann:s3cret:with:colons\n\nbob:pw\n")
    args = build_parser().parse_args(["--output_path", str(tmp_path / "out"), "--base_model_dir", str(tiny_base),
                                      "--auth", "carl:pw2", "--auth", "dee:pw3", "--auth_file", str(users),
                                      "--restrict_paths"])
    config = config_from_args(args)
    assert config.auth == (("carl", "pw2"), ("dee", "pw3"), ("ann", "s3cret:with:colons"), ("bob", "pw"))
    config.output.mkdir()
    s = serve(config, TrainingJobs(command=HARMLESS_CLI))
    try:
        for auth in (None, ("ann", "wrong")):
            # no sign-in (AuthenticationError), then a wrong password (Gradio answers 400: a ValueError)
            with pytest.raises((AuthenticationError, ValueError), match=r"Could not (load|login to) "):
                Client(s.url, verbose=False, download_files=False, auth=auth).predict(
                    str(tmp_path), api_name="/list_checkpoints")
        signed_in = client(s, auth=("ann", "s3cret:with:colons"))
        assert signed_in.predict(str(tmp_path / "out"), api_name="/list_checkpoints") == []
        refused = signed_in.predict("/etc", api_name="/list_checkpoints")
        assert isinstance(refused, dict) and "outside the work folders" in refused["error"], refused
    finally:
        s.app.close()


def test_sharing_without_sign_in_warns_and_bad_sign_ins_are_refused_by_name(tiny_base, tmp_path):
    def config(*flags: str) -> WebUIConfig:
        return config_from_args(build_parser().parse_args(["--output_path", str(tmp_path / "out"), *flags]))

    flags = ([], ["--auth", "a:b"], ["--restrict_paths"], ["--share"], ["--host", "0.0.0.0"], ["--host", "::1"])
    assert [config(*f).restricted for f in flags] == [False, False, True, True, True, False]  # sign-in alone: no
    assert not any("no sign-in" in line for line in warnings_for(config("--share", "--auth", "a:b")))
    assert warnings_for(config("--restrict_paths")) == []  # loopback: nobody else to warn about
    served = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--host", UNBINDABLE, "--output_path",
                             str(tmp_path / "out"), "--base_model_dir", str(tiny_base)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert "Warning: no sign-in (--auth or --auth_file): anyone who can reach the page" in served.stderr, served.stderr
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

    # the Review sub-tab's and the Test tab's Whisper boxes follow the same rule (a folder name relative to the
    # server's folder too), and nothing is loaded
    spoken = upload(restricted, outside)
    for model in ("/etc", "tests", "Systran/faster-whisper-tiny"):
        notice = call_handler(restricted, "measure_clips", model)[3]
        assert f"Whisper model '{model}' is not one of the model names" in notice, notice
        scores, = call_handler(restricted, "score_speech", spoken, None, None, "text", "en", True, model)
        assert f"Whisper model '{model}' is not one of the model names" in scores, scores
    assert restricted.ctx.scorer.loads == 0


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


# --- 8. the upload folder (the job control: tests/test_security_jobs.py) -----------------------------------------
def test_the_upload_folder_must_be_our_own_private_folder(tmp_path, tiny_base):
    fresh = tmp_path / "uploads" / "gradio"
    assert prepare_upload_dir(fresh) == fresh.resolve() and (fresh.stat().st_mode & 0o777) == 0o700
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    if os.getuid() == 0:
        os.chown(foreign, 12345, 12345)
        with pytest.raises(ValueError, match="belongs to another user"):
            prepare_upload_dir(foreign)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone on the machine could swap an upload for their own file
    with pytest.raises(ValueError, match="writable by every user"):
        prepare_upload_dir(shared)
    (tmp_path / "root_link").symlink_to("/")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "root_link")}
    done = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--output_path", str(tmp_path / "out"),
                           "--base_model_dir", str(tiny_base), "--host", UNBINDABLE], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 1 and "far too broad" in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- 9. durable records, and the export renamed into place ------------------------------------------------------------
def test_run_records_and_the_runs_vocabulary_are_written_whole_and_durable(train, tmp_path, monkeypatch):
    """run.json, the run's vocab.json and data_manifest.json: each written as <name>.tmp, fsynced, renamed over
    <name>, then the run folder fsynced (a crash or power cut leaves the old file or the whole new one)."""
    done = []  # ("fsync", path) and ("replace", source, target), in order
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source, target) -> None:
        done.append(("replace", str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run_dir = train(tmp_path, max_steps=1).run_dir
    for name in ("run.json", "vocab.json", "data_manifest.json"):
        target = str(run_dir / name)
        renamed = done.index(("replace", target + ".tmp", target))
        assert ("fsync", target + ".tmp") in done[:renamed], f"{name} is renamed before its bytes are durable"
        assert ("fsync", str(run_dir)) in done[renamed:], f"{name}'s rename is not made durable"


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

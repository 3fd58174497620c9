"""Bad input and faults end well: one sentence naming the path or value, a non-zero exit, nothing lost."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_same_training_state, read_events

from utils.checkpoints.classify import classify_checkpoint, list_checkpoints
from utils.errors import RunError
from utils.training.run_folder import check_disk_space


def cli(base, dataset, output, *extra: str, preexec=None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "utils/gpt_train.py", "--train_csv", str(dataset.train_csv), "--eval_csv",
           str(dataset.eval_csv), "--output_path", str(output), "--base_model_dir", str(base), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def assert_one_clear_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_missing_base_folder(tiny_dataset, tmp_path):
    proc = cli(tmp_path / "no_base", tiny_dataset, tmp_path / "out")
    assert_one_clear_line(proc, str(tmp_path / "no_base"), "--base_model_dir")
    assert not (tmp_path / "out").exists()


def test_base_folder_missing_a_file(tiny_base, tiny_dataset, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    (base / "dvae.pth").unlink()
    assert_one_clear_line(cli(base, tiny_dataset, tmp_path / "out"), "dvae.pth", "--base_model_dir")


def test_missing_dataset_csv(tiny_base, tiny_dataset, tmp_path):
    proc = subprocess.run([sys.executable, "utils/gpt_train.py", "--train_csv", str(tmp_path / "nope.csv"),
                           "--eval_csv", str(tiny_dataset.eval_csv), "--output_path", str(tmp_path / "out"),
                           "--base_model_dir", str(tiny_base)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert_one_clear_line(proc, "nope.csv")
    assert not list((tmp_path / "out").rglob("*.pth")) and not (tmp_path / "out" / "run").exists()


def test_dataset_with_errors_is_refused_naming_the_line(tiny_base, tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset.folder, data)
    lines = (data / "metadata_train.csv").read_text().splitlines()
    lines[2] = "wavs/missing.wav|some words here|speaker"
    (data / "metadata_train.csv").write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "utils/gpt_train.py", "--train_csv", str(data / "metadata_train.csv"),
                           "--eval_csv", str(data / "metadata_eval.csv"), "--output_path", str(tmp_path / "out"),
                           "--base_model_dir", str(tiny_base)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert_one_clear_line(proc, "line 3", "missing.wav")


def test_bad_vocabulary_file(tiny_base, tiny_dataset, tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text("not json")
    assert_one_clear_line(cli(tiny_base, tiny_dataset, tmp_path / "out", "--vocab", str(vocab)), str(vocab))


def test_output_path_that_is_a_file(tiny_base, tiny_dataset, tmp_path):
    out = tmp_path / "a_file"
    out.write_text("precious")
    assert_one_clear_line(cli(tiny_base, tiny_dataset, out), "--output_path", str(out))
    assert out.read_text() == "precious"


def test_checkpoint_of_another_xtts_size_is_refused(tiny_base, tiny_dataset, tmp_path):
    from utils import testbed

    other = tmp_path / "other_base"
    testbed.build_base(other)
    config = json.loads((other / "config.json").read_text())
    config["model_args"]["gpt_layers"] = 3
    (other / "config.json").write_text(json.dumps(config))
    proc = cli(other, tiny_dataset, tmp_path / "out", "--custom_model", str(tiny_base / "model.pth"))
    assert_one_clear_line(proc, "model.pth")


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(reference_run, tiny_base, tiny_dataset, tmp_path):
    """RLIMIT_FSIZE below a checkpoint's size: the save fails like a full disk would."""
    run = tmp_path / "run"
    shutil.copytree(reference_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoint_[1-7].pth", "best_model.pth"))
    source = run / "checkpoint_8.pth"
    before = source.stat().st_size, source.stat().st_mtime_ns
    limit = source.stat().st_size // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(source), "--num_epochs", "3",
               "--save_step", "1", preexec=small_files)
    assert_one_clear_line(proc, "Could not write", "checkpoint_9.pth", "resume from the newest checkpoint")
    assert (source.stat().st_size, source.stat().st_mtime_ns) == before
    assert_same_training_state(reference_run.run_dir / "checkpoint_8.pth", source)
    assert not (run / "checkpoint_9.pth").exists() and not list(run.glob("*.tmp"))  # no partial file left


def test_space_check_refuses_or_warns_before_training(tmp_path):
    events = []
    with pytest.raises(RunError, match="Not enough disk space"):
        check_disk_space(tmp_path, 10 * 1024**3, keep=2, events=events.append, free_bytes=15 * 1024**3)
    check_disk_space(tmp_path, 10 * 1024**3, keep=2, events=events.append, free_bytes=30 * 1024**3)
    assert len(events) == 1 and "Lower --keep_checkpoints" in events[0].message
    check_disk_space(tmp_path, 10 * 1024**3, keep=2, events=events.append, free_bytes=50 * 1024**3)
    assert len(events) == 1


def test_pruning_keeps_the_newest_and_never_the_checkpoint_a_run_resumed_from(train, tmp_path):
    first = train(tmp_path, max_steps=2, keep_checkpoints=1, save_step=1)
    assert [p.name for p in first.run_dir.glob("checkpoint_*.pth")] == ["checkpoint_2.pth"]
    # to 6 updates: past epoch 0's evaluation (after update 4), which writes best_model.pth, then two more saves
    second = train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=6, keep_checkpoints=1, save_step=1)
    assert second.run_dir == first.run_dir
    names = sorted(p.name for p in first.run_dir.glob("checkpoint_*.pth"))
    assert names == ["checkpoint_2.pth", "checkpoint_6.pth"]  # 3-5 pruned; 2 is where this run resumed from
    best = read_events(first.run_dir, "best")
    assert [e["step"] for e in best] == [4]
    assert classify_checkpoint(first.run_dir / "best_model.pth").step == 4  # kept whole through 2 prunings


def test_a_failed_start_never_deletes_what_a_run_folder_holds(reference_run, train, tmp_path):
    run = tmp_path / "run" / "training" / "kept"
    shutil.copytree(reference_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoint_[1-7].pth", "best_model.pth"))
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ValueError):
        train(tmp_path, custom_model=str(run / "checkpoint_8.pth"), batch_size=0)
    assert sorted(p.name for p in run.iterdir()) == before
    assert Path(run / "checkpoint_8.pth").stat().st_size > 0


def test_read_only_run_folder_is_refused_and_left_intact(reference_run, tiny_base, tiny_dataset, tmp_path,
                                                         small_filesystem):
    run = small_filesystem / "run" / "training" / "kept"
    shutil.copytree(reference_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoint_[1-7].pth", "best_model.pth"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    source = run / "checkpoint_8.pth"
    before = sorted((p.name, p.stat().st_size) for p in run.iterdir())
    proc = cli(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(source), "--num_epochs", "3")
    assert_one_clear_line(proc, "Cannot write into the run folder", str(run))
    assert sorted((p.name, p.stat().st_size) for p in run.iterdir()) == before


def test_a_really_full_disk_during_a_save(reference_run, tiny_base, tiny_dataset, make_small_filesystem):
    """The start's space check passes (room for two checkpoints and a little), the first saves fit, a later one
    meets a real ENOSPC: one sentence naming it, exit 1, and the checkpoint before it whole."""
    size = (reference_run.run_dir / "checkpoint_1.pth").stat().st_size
    disk = make_small_filesystem(1024)
    fill_until_free(disk, 2 * size + 30 * 1024**2)
    proc = cli(tiny_base, tiny_dataset, disk / "out", "--num_epochs", "2", "--keep_checkpoints", "100",
               "--save_step", "1", "--max_steps", "4")
    assert_one_clear_line(proc, "Could not write", "resume from the newest checkpoint")
    assert proc.returncode == 1, proc.stderr
    saved = list_checkpoints(disk / "out")
    assert saved, proc.stderr  # the first saves fitted: the failure came at a later save, not at the start
    newest = Path(saved[0].path)
    failed = newest.with_name(f"checkpoint_{saved[0].step + 1}.pth")
    assert f"{failed} (No space left on device)" in proc.stderr, proc.stderr
    assert_same_training_state(reference_run.run_dir / newest.name, newest)
    assert not failed.exists() and not list(disk.rglob("*.tmp"))  # no partial file, under any name
    for path in (disk / "out").rglob("*.pth"):
        classify_checkpoint(path)  # every file with a checkpoint's name is complete


def fill_until_free(mount: Path, free: int) -> None:
    """Take space on `mount` with one allocated file until exactly about `free` bytes are left."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(mount).free - free)
        os.fsync(f.fileno())
    assert abs(shutil.disk_usage(mount).free - free) < 1024**2


def test_background_writer_finishes_files_in_order_and_reports_a_failed_fsync(tmp_path, monkeypatch):
    """CheckpointWriter: training goes on while a file is made durable; each file appears only complete, and
    an I/O error at fsync surfaces at the next poll/wait as one clear error, the older file untouched."""
    import os

    import torch

    from utils.checkpoints.keys import CheckpointWriteError
    from utils.checkpoints.write import CheckpointWriter

    writer = CheckpointWriter()
    first, second = tmp_path / "checkpoint_1.pth", tmp_path / "checkpoint_2.pth"
    assert writer.save({"w": torch.arange(10)}, first) == []
    assert writer.save({"w": torch.arange(20)}, second) == [first]  # the first is finished before the second
    assert writer.wait() == [second] and writer.wait() == []
    assert torch.equal(torch.load(second, weights_only=True)["w"], torch.arange(20))

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    writer.save({"w": torch.zeros(3)}, first)
    with pytest.raises(CheckpointWriteError, match=r"checkpoint_1\.pth \(Input/output error\)"):
        writer.wait()
    monkeypatch.undo()
    assert torch.equal(torch.load(first, weights_only=True)["w"], torch.arange(10))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_still_reports_the_file_that_became_durable_before_it(tmp_path, monkeypatch):
    """When serialising a checkpoint fails (a full disk), the previous one, already durable, is still announced
    at the next wait: the run's `checkpoint` event and its last checkpoint are not lost."""
    import torch

    from utils.checkpoints import write
    from utils.checkpoints.keys import CheckpointWriteError

    writer = write.CheckpointWriter()
    first, second = tmp_path / "checkpoint_1.pth", tmp_path / "checkpoint_2.pth"
    writer.save({"w": torch.arange(10)}, first)

    def disk_full(state, path):
        raise write._write_error(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(write, "_write_partial", disk_full)
    with pytest.raises(CheckpointWriteError, match="No space left"):
        writer.save({"w": torch.arange(20)}, second)
    assert writer.wait() == [first]


def test_a_second_run_in_one_process_logs_only_to_its_own_folder(train, tmp_path):
    """coqui's trainer adds a log-file handler per run and never removes it: a later run in the same process (the
    WebUI's tests, the self-check) wrote into every earlier run's log, and failed outright once that folder was
    gone and the handler closed (as a Gradio server starting in the process does to every handler)."""
    import logging

    first = train(tmp_path / "a", max_steps=1)
    first_log = first.run_dir / "trainer_0_log.txt"
    before = first_log.read_text()
    for handler in logging.getLogger("trainer").handlers:
        handler.close()  # what logging.config.dictConfig does to existing handlers
    second = train(tmp_path / "b", max_steps=1)
    assert first_log.read_text() == before
    assert (second.run_dir / "trainer_0_log.txt").read_text()
    shutil.rmtree(first.run_dir)
    third = train(tmp_path / "c", max_steps=1)
    assert third.step == 1

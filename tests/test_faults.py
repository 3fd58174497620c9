"""Bad input and faults end well: one sentence naming the path or value, a non-zero exit, nothing lost."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, read_events

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
    assert not list(run.glob("*.tmp"))


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
    second = train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=4, keep_checkpoints=1, save_step=1)
    assert second.run_dir == first.run_dir
    names = sorted(p.name for p in first.run_dir.glob("checkpoint_*.pth"))
    assert names == ["checkpoint_2.pth", "checkpoint_4.pth"]  # 3 pruned; 2 is where this run resumed from
    assert (first.run_dir / "best_model.pth").is_file() or not read_events(first.run_dir, "best")


def test_a_failed_start_never_deletes_what_a_run_folder_holds(reference_run, train, tmp_path):
    run = tmp_path / "run" / "training" / "kept"
    shutil.copytree(reference_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoint_[1-7].pth", "best_model.pth"))
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ValueError):
        train(tmp_path, custom_model=str(run / "checkpoint_8.pth"), batch_size=0)
    assert sorted(p.name for p in run.iterdir()) == before
    assert Path(run / "checkpoint_8.pth").stat().st_size > 0


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 500 MB ext4 filesystem of our own (a loop-mounted image on disk, not memory); remountable
    read-only. Room for one tiny-model checkpoint (~310 MB), not two."""
    image, mount = tmp_path / "fs.img", tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "500M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


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


def test_a_really_full_disk_during_a_save(reference_run, tiny_base, tiny_dataset, small_filesystem):
    """Room for the copied checkpoint but not for the next one: the save fails, the old file stays whole."""
    run = small_filesystem / "run" / "training" / "kept"
    shutil.copytree(reference_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoint_[1-7].pth", "best_model.pth"))
    source = run / "checkpoint_8.pth"
    digest = file_digest(source)
    proc = cli(tiny_base, tiny_dataset, small_filesystem / "out", "--custom_model", str(source), "--num_epochs", "3",
               "--save_step", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "disk space" in proc.stderr.lower() or "Could not write" in proc.stderr
    assert file_digest(source) == digest
    assert not list(small_filesystem.rglob("*.tmp"))


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


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

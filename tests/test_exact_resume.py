"""A resumed run is bit-for-bit the run that never stopped: weights, every optimizer tensor, the
scheduler, and the per-update loss and learning rate, compared with torch.equal / ==, never a tolerance."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_same_training_state, read_events

from utils.checkpoints.classify import classify_checkpoint, list_checkpoints


def ckpt(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"checkpoint_{step}.pth"


def assert_same_log_after(reference_dir: Path, resumed_dir: Path, step: int) -> None:
    """Per-update loss and LR of the resumed run equal the uninterrupted run's for every update after `step`."""
    ref = {e["step"]: (e["loss"], e["lr"], e["avg_loss"]) for e in read_events(reference_dir) if e["step"] > step}
    res = {e["step"]: (e["loss"], e["lr"], e["avg_loss"]) for e in read_events(resumed_dir) if e["step"] > step}
    assert res == ref


@pytest.mark.parametrize("stop_at", [4, 3], ids=["epoch_boundary", "mid_epoch"])
def test_resume_equals_uninterrupted_run(reference_run, train, tmp_path, stop_at):
    resumed = train(tmp_path, custom_model=str(ckpt(reference_run.run_dir, stop_at)))
    assert resumed.step == 8
    assert_same_training_state(ckpt(reference_run.run_dir, 8), resumed.last_checkpoint)
    assert_same_log_after(reference_run.run_dir, resumed.run_dir, stop_at)


def test_three_chained_resumes(reference_run, train, tmp_path):
    source = ckpt(reference_run.run_dir, 2)
    for target in (4, 6, None):  # stopped by --max_steps twice, then run to the end
        result = train(tmp_path, custom_model=str(source), max_steps=target)
        assert result.last_checkpoint.name == f"checkpoint_{target or 8}.pth"
        source = result.last_checkpoint
    assert_same_training_state(ckpt(reference_run.run_dir, 8), source)
    assert_same_log_after(reference_run.run_dir, source.parent, 2)


def test_resume_right_after_evaluation_keeps_best_model_tracking(reference_run, train, tmp_path):
    """checkpoint_5 is the first update after epoch 0's evaluation and best-model save."""
    resumed = train(tmp_path, custom_model=str(ckpt(reference_run.run_dir, 5)))
    saved_ref = torch.load(ckpt(reference_run.run_dir, 8), weights_only=True, mmap=True)["run_state"]
    saved_res = torch.load(resumed.last_checkpoint, weights_only=True, mmap=True)["run_state"]
    assert saved_res["best_loss"] == saved_ref["best_loss"]
    best_after = [e for e in read_events(reference_run.run_dir, "best") if e["step"] > 5]
    assert [e["step"] for e in read_events(resumed.run_dir, "best")] == [e["step"] for e in best_after]
    assert [e["eval_loss"] for e in read_events(resumed.run_dir, "eval")] == [
        e["eval_loss"] for e in read_events(reference_run.run_dir, "eval") if e["step"] > 5]


def test_grad_accumulation_checkpoints_fall_on_update_boundaries(train, tmp_path):
    reference = train(tmp_path / "ref", grad_accum=2, save_step=1)  # 4 batches/epoch -> 2 updates/epoch
    assert reference.step == 4
    for step in range(1, 5):
        state = torch.load(ckpt(reference.run_dir, step), weights_only=True, mmap=True)
        assert state["run_state"]["epoch_batch"] % 2 == 0  # never inside an accumulation window
        first = next(iter(state["optimizer"][0]["state"].values()))
        assert int(first["step"]) == step
    resumed = train(tmp_path / "res", grad_accum=2, custom_model=str(ckpt(reference.run_dir, 1)))
    assert_same_training_state(ckpt(reference.run_dir, 4), resumed.last_checkpoint)


def test_loader_workers_do_not_change_the_run(reference_run, train, tmp_path):
    """Sample draws are a function of (seed, epoch, position): 2 workers give the very same run as none."""
    resumed = train(tmp_path, num_workers=2, custom_model=str(ckpt(reference_run.run_dir, 3)))
    assert_same_training_state(ckpt(reference_run.run_dir, 8), resumed.last_checkpoint)
    straight = train(tmp_path / "straight", num_workers=2, max_steps=3)
    assert_same_training_state(ckpt(reference_run.run_dir, 3), straight.last_checkpoint)


def test_more_epochs_on_resume_come_from_the_command(reference_run, train, tmp_path):
    source = tmp_path / "run" / "checkpoint_8.pth"  # a copy: resuming the newest file continues in its folder
    source.parent.mkdir()
    os.link(ckpt(reference_run.run_dir, 8), source)
    result = train(tmp_path, custom_model=str(source), num_epochs=3)
    assert (result.start_step, result.step, result.epoch) == (8, 12, 2)


def test_changed_dataset_is_reported_in_one_line_and_training_goes_on(reference_run, tiny_dataset, train, tmp_path):
    changed = tmp_path / "data"
    changed.mkdir()
    (changed / "wavs").symlink_to(tiny_dataset.folder / "wavs")
    lines = tiny_dataset.train_csv.read_text().splitlines()
    (changed / "metadata_train.csv").write_text("\n".join(lines[:-1]) + "\n")
    result = train(tmp_path / "out", custom_model=str(ckpt(reference_run.run_dir, 4)), max_steps=5,
                   train_csv=str(changed / "metadata_train.csv"))
    warnings = [e["message"] for e in read_events(result.run_dir, "warning") if "Training data" in e["message"]]
    assert len(warnings) == 1 and "Training data changed since checkpoint_4.pth" in warnings[0]  # disk may warn too
    assert result.step == 5


def test_stale_partial_files_are_removed_and_never_listed(train, tmp_path):
    first = train(tmp_path, max_steps=1)
    stale = first.run_dir / "checkpoint_2.pth.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert [Path(i.path).name for i in list_checkpoints(tmp_path)] == ["checkpoint_1.pth"]
    train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=2)
    assert not stale.exists()


def test_second_training_into_the_same_run_folder_is_refused(train, tmp_path):
    first = train(tmp_path, max_steps=1)
    with open(first.run_dir / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="Another training is already writing"):
            train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=2)


def tensorboard_steps(run_dir: Path) -> list[int]:
    """The steps of the training loss scalar in a run folder's TensorBoard files, as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [s.step for s in acc.Scalars("TrainIterStats/loss")]


def test_tensorboard_steps_continue_without_duplicates(reference_run, tiny_base, tiny_dataset, train, tmp_path):
    """Killed after checkpoint_2 with a further step already in TensorBoard's files: the resumed run purges it,
    so each step is shown once."""
    proc = subprocess.Popen(cli(tiny_base, tiny_dataset, tmp_path, "--save_step", "2"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: {("checkpoint", 2), ("update", 3)} <= {(e["event"], e["step"]) for e in progress(tmp_path)})
    proc.send_signal(signal.SIGKILL)  # coqui flushes TensorBoard after each batch, before the update event
    assert proc.wait(timeout=30) == -signal.SIGKILL
    newest = list_checkpoints(tmp_path)[0]
    run_dir = Path(newest.path).parent
    logged = tensorboard_steps(run_dir)
    assert logged == list(range(len(logged))) and len(logged) > newest.step  # steps after the checkpoint on disk
    resumed = train(tmp_path, custom_model=newest.path)
    assert resumed.run_dir == run_dir
    assert tensorboard_steps(run_dir) == list(range(8))


# --- process faults: real signals to the CLI ----------------------------------------------------------------
def cli(base, dataset, output, *extra: str) -> list[str]:
    return [sys.executable, "utils/gpt_train.py", "--train_csv", str(dataset.train_csv), "--eval_csv",
            str(dataset.eval_csv), "--output_path", str(output), "--base_model_dir", str(base), "--num_epochs", "2",
            "--batch_size", "2", "--keep_checkpoints", "100", *extra]


def wait_for(predicate, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_saves_a_resumable_checkpoint_and_exits_0(reference_run, tiny_base, tiny_dataset, train,
                                                             tmp_path, sig):
    proc = subprocess.Popen(cli(tiny_base, tiny_dataset, tmp_path, "--save_step", "1000"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: any(e["event"] == "update" and e["step"] >= 2 for e in progress(tmp_path)))
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    saved = list_checkpoints(tmp_path)
    assert len(saved) == 1 and 2 <= saved[0].step < 8
    resumed = train(tmp_path, custom_model=saved[0].path)
    assert_same_training_state(ckpt(reference_run.run_dir, 8), resumed.last_checkpoint)


def progress(output: Path) -> list[dict]:
    """Every complete progress event of the runs under `output`, in order (a line being written is left out)."""
    found = []
    for path in sorted(output.glob("run/training/*/progress.jsonl")):
        text = path.read_text()
        found += [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]
    return found


def in_an_update(output: Path) -> bool:
    """save_step 2: a checkpoint is durable and the newest update (odd) ended without a save: the next is training."""
    events = progress(output)
    updates = [e["step"] for e in events if e["event"] == "update"]
    return any(e["event"] == "checkpoint" for e in events) and bool(updates) and updates[-1] % 2 == 1


def update_was_cut(output: Path, events: list[dict]) -> None:
    assert [e["step"] for e in events if e["event"] == "update"][-1] % 2 == 1
    assert not list(output.rglob("*.pth.tmp"))  # no checkpoint write was under way


def in_a_save(output: Path) -> bool:
    """save_step 1: checkpoint_N.pth.tmp is being written, N >= 2 (so checkpoint_N-1 is durable)."""
    return any(p.name != "checkpoint_1.pth.tmp" for p in output.rglob("checkpoint_*.pth.tmp"))


def a_save_was_cut(output: Path, events: list[dict]) -> None:
    assert list(output.rglob("checkpoint_*.pth.tmp"))


def in_an_evaluation(output: Path) -> bool:
    """save_step 3: update 4 ended epoch 0 and checkpoint_3 is durable, but epoch 0's evaluation has not ended."""
    events = progress(output)
    kinds = {(e["event"], e["step"]) for e in events}
    return ("update", 4) in kinds and not any(e["event"] == "eval" for e in events) and any(
        output.rglob("checkpoint_3.pth"))


def evaluation_was_cut(output: Path, events: list[dict]) -> None:
    assert [e["step"] for e in events if e["event"] == "update"][-1] == 4
    assert not any(e["event"] == "eval" for e in events)


KILL_MOMENTS = {"update": (2, in_an_update, update_was_cut), "save": (1, in_a_save, a_save_was_cut),
                "evaluation": (3, in_an_evaluation, evaluation_was_cut)}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(KILL_MOMENTS))
def test_sigkill_then_resume_from_newest_checkpoint(reference_run, tiny_base, tiny_dataset, train, tmp_path, moment):
    """SIGKILL at a moment read from the progress events and files (during an update, a checkpoint write, an
    evaluation): every file with a checkpoint's name is complete, and resuming the newest one ends as the run
    that never stopped."""
    save_step, moment_reached, check_moment = KILL_MOMENTS[moment]
    proc = subprocess.Popen(cli(tiny_base, tiny_dataset, tmp_path, "--save_step", str(save_step)), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: moment_reached(tmp_path) or proc.poll() is not None, timeout=300)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before the {moment} moment came"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    check_moment(tmp_path, progress(tmp_path))
    for path in tmp_path.rglob("*.pth"):
        classify_checkpoint(path)
    newest = list_checkpoints(tmp_path)[0]
    assert 1 <= newest.step < 8
    resumed = train(tmp_path, custom_model=newest.path)
    assert_same_training_state(ckpt(reference_run.run_dir, 8), resumed.last_checkpoint)
    assert not list(tmp_path.rglob("*.pth.tmp"))  # a cut write's leftover is removed on resume

"""Issue 18 on the tiny test bed: the NaN guard (a poisoned clip, real training), gradient checkpointing, bf16 on
CPU, 8-bit AdamW, and the options a CPU refuses. Exactness is torch.equal (assert_same_training_state)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, assert_same_training_state, read_events, train_options

from utils import testbed
from utils.checkpoints.keys import CheckpointError
from utils.training.run import train_gpt

POISONED = ("clip_003.wav", "clip_006.wav")  # training clips (the first two are the eval set)


def poison(clip: Path) -> None:
    """Rewrite a clip as float WAV with every 7th sample NaN: it decodes, validates, and its features are NaN."""
    samples, rate = sf.read(clip, dtype="float32")
    samples[::7] = np.nan
    sf.write(clip, samples, rate, subtype="FLOAT")


@pytest.fixture(scope="module")
def poisoned_dataset(tmp_path_factory) -> testbed.TinyDataset:
    data = testbed.build_dataset(tmp_path_factory.mktemp("poisoned"))
    for clip in data.clips:
        if clip.name in POISONED:
            poison(clip)
    return data


@pytest.fixture(scope="module")
def all_poisoned(tmp_path_factory) -> testbed.TinyDataset:
    data = testbed.build_dataset(tmp_path_factory.mktemp("all_poisoned"))
    for clip in data.clips[2:]:  # every training clip; the eval clips stay clean
        poison(clip)
    return data


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True, mmap=True)


def assert_equal_nested(a, b, where: str = "") -> None:
    """torch.equal for every tensor of two nested states (bitsandbytes' optimizer state nests dicts and ints)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where} keys differ"
        for k in a:
            assert_equal_nested(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_8bit_training_state(a: Path, b: Path) -> None:
    """What assert_same_training_state compares, with the optimizer's nested 8-bit state compared tensor by tensor."""
    A, B = load(a), load(b)
    for key in ("step", "epoch", "model", "optimizer", "scheduler", "optimizer_name"):
        assert_equal_nested(A[key], B[key], key)
    for key in ("best_loss", "epoch_batch", "batches_done"):
        assert A["run_state"][key] == B["run_state"][key], f"run_state {key} differs"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "utils" / "gpt_train.py"), *args], capture_output=True,
                          text=True, timeout=600)


def cli_args(base: Path, data: testbed.TinyDataset, out: Path, *extra: str) -> list[str]:
    return ["--train_csv", str(data.train_csv), "--eval_csv", str(data.eval_csv), "--output_path", str(out),
            "--base_model_dir", str(base), "--num_epochs", "1", "--batch_size", "2", *extra]


# --- NaN guard ------------------------------------------------------------------------------------------------
def test_update_with_a_non_finite_loss_is_skipped_and_training_goes_on(tiny_base, poisoned_dataset, tmp_path):
    result = train_gpt(train_options(tiny_base, poisoned_dataset, tmp_path, num_epochs=2, save_step=1))
    warnings = [e for e in read_events(result.run_dir, "warning") if e["message"].startswith("Skipped")]
    updates = read_events(result.run_dir, "update")
    assert warnings and updates, "the seeded draws give both skipped and applied updates"
    for w in warnings:  # each names a poisoned clip of its batch, and says nothing moved
        assert any(name in w["message"] for name in POISONED), w["message"]
        assert "optimizer and learning-rate schedule are unchanged" in w["message"]
    assert len(updates) + len(warnings) == 8  # 2 epochs of 4 batches: each batch either applied or skipped
    final = load(result.last_checkpoint)
    assert final["step"] == len(updates) == result.step
    steps = {int(s["step"]) for s in final["optimizer"][0]["state"].values()}
    assert steps == {len(updates)}  # the optimizer moved once per applied update only
    assert final["scheduler"][0]["last_epoch"] == len(updates)
    assert all(torch.isfinite(t).all() for t in final["model"].values() if t.is_floating_point())
    assert all(np.isfinite(e["avg_loss"]) for e in updates)  # the skipped batches' NaN stays out of the averages


def test_updates_not_finite_k_times_in_a_row_stop_with_exit_3_and_save_nothing(reference_run, tiny_base,
                                                                               all_poisoned, tmp_path):
    start = reference_run.run_dir / "checkpoint_5.pth"  # after epoch 0's evaluation: the rest is training
    proc = run_cli(*cli_args(tiny_base, all_poisoned, tmp_path, "--custom_model", str(start),
                             "--num_epochs", "2", "--max_bad_updates", "2", "--save_step", "1"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: Training diverged: 2 updates in a row")
    assert f"the last good checkpoint is {start}" in error
    assert "--lr 5e-06" in error and "clip_0" in error  # the learning rate and the failing batches' clips
    run_dir = next((tmp_path / "run" / "training").iterdir())
    assert not list(run_dir.glob("*.pth")), "a diverged run saves nothing new"
    messages = [e["message"] for e in read_events(run_dir, "warning")]
    assert messages[-1].startswith("Training diverged")
    assert not read_events(run_dir, "end")  # an end event would tell the WebUI it exited 0


# --- gradient checkpointing ---------------------------------------------------------------------------------
def test_gradient_checkpointing_gives_the_same_gradients_and_resumes_exactly(reference_run, train, tmp_path):
    """AdamW's first moment after one update is 0.1 x the gradient: equal within float tolerance either way."""
    plain = load(reference_run.run_dir / "checkpoint_1.pth")
    ckpt = train(tmp_path / "ckpt", gradient_checkpointing=True, save_step=1, num_epochs=1)
    first = load(ckpt.run_dir / "checkpoint_1.pth")
    for pid, state in plain["optimizer"][0]["state"].items():
        torch.testing.assert_close(first["optimizer"][0]["state"][pid]["exp_avg"], state["exp_avg"], rtol=1e-4,
                                   atol=1e-9)
    resumed = train(tmp_path / "resumed", gradient_checkpointing=True, num_epochs=1,
                    custom_model=str(ckpt.run_dir / "checkpoint_2.pth"))
    assert_same_training_state(ckpt.run_dir / "checkpoint_4.pth", resumed.last_checkpoint)


def test_gradient_checkpointing_is_switched_on_in_the_gpt(tiny_base, tiny_dataset, tmp_path):
    from utils.base_model.folder import check_base_folder
    from utils.training.config import build_config, build_model

    opts = train_options(tiny_base, tiny_dataset, tmp_path)
    config = build_config(opts, check_base_folder(tiny_base), tiny_base / "vocab.json", tmp_path)
    assert not build_model(config, tiny_base / "vocab.json").xtts.gpt.gpt.is_gradient_checkpointing
    model = build_model(config, tiny_base / "vocab.json", gradient_checkpointing=True)
    assert model.xtts.gpt.gpt.is_gradient_checkpointing


# --- precision and optimizer ---------------------------------------------------------------------------------
def test_bf16_trains_with_cpu_autocast_and_resumes_exactly(reference_run, train, tmp_path):
    straight = train(tmp_path / "straight", precision="bf16", save_step=1, num_epochs=1)
    losses = [e["loss"] for e in read_events(straight.run_dir)]
    fp32 = [e["loss"] for e in read_events(reference_run.run_dir)][:4]
    assert all(np.isfinite(losses)) and losses != fp32  # bf16 autocast was in effect
    resumed = train(tmp_path / "resumed", precision="bf16", num_epochs=1,
                    custom_model=str(straight.run_dir / "checkpoint_2.pth"))
    assert_same_training_state(straight.run_dir / "checkpoint_4.pth", resumed.last_checkpoint)


def test_adamw8bit_resumes_exactly_and_the_other_optimizer_is_refused_by_name(train, tmp_path):
    straight = train(tmp_path / "straight", optimizer="adamw8bit", save_step=1, num_epochs=1)
    middle = straight.run_dir / "checkpoint_2.pth"
    state = load(middle)
    assert state["optimizer_name"] == "adamw8bit"
    assert any("__bnb_optimizer_quant_state__" in s for s in state["optimizer"][0]["state"].values())
    resumed = train(tmp_path / "resumed", optimizer="adamw8bit", num_epochs=1, custom_model=str(middle))
    assert_same_8bit_training_state(straight.run_dir / "checkpoint_4.pth", resumed.last_checkpoint)
    with pytest.raises(CheckpointError, match="holds adamw8bit optimizer state and this run uses --optimizer adamw"):
        train(tmp_path / "other", num_epochs=1, custom_model=str(middle))


def test_adamw_checkpoint_is_refused_by_adamw8bit(reference_run, train, tmp_path):
    with pytest.raises(CheckpointError, match="holds adamw optimizer state and this run uses --optimizer adamw8bit"):
        train(tmp_path, optimizer="adamw8bit", custom_model=str(reference_run.run_dir / "checkpoint_2.pth"))


@pytest.mark.parametrize(("extra", "says"), [
    (["--precision", "fp16"], "--precision fp16 (or --mixed_precision) needs a CUDA GPU"),
    (["--mixed_precision"], "--precision fp16 (or --mixed_precision) needs a CUDA GPU"),
    (["--batch_size", "auto"], "--batch_size auto measures GPU memory with trial steps and needs a CUDA GPU"),
    (["--mixed_precision", "--precision", "bf16"], "--mixed_precision means --precision fp16"),
], ids=["fp16", "mixed_precision", "batch_auto", "conflict"])
def test_cpu_refuses_gpu_only_options_in_one_sentence_before_anything(tiny_base, tiny_dataset, tmp_path, extra, says):
    proc = run_cli(*cli_args(tiny_base, tiny_dataset, tmp_path, *extra))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: {says}"), proc.stderr[-1000:]
    assert not (tmp_path / "run").exists()  # nothing created, nothing trained


def test_batch_size_takes_a_number_or_auto_everywhere():
    from utils.options import TrainOptions, fields_of, range_text

    assert TrainOptions.from_dict({"batch_size": "auto"}).batch_size == "auto"
    assert TrainOptions.from_dict({"batch_size": "4"}).batch_size == 4
    assert TrainOptions(batch_size="auto").to_argv() == ["--batch_size", "auto"]
    assert range_text(fields_of(TrainOptions)["batch_size"]) == "auto or a number between 1 and 1024"
    with pytest.raises(ValueError, match="--batch_size must be auto or a number"):
        TrainOptions.from_dict({"batch_size": "big"})
    with pytest.raises(ValueError, match="--batch_size must be auto or a number between 1 and 1024, got 0"):
        TrainOptions(train_csv="a", eval_csv="b", output_path="o", batch_size=0).validate()
    assert json.loads(json.dumps({"b": TrainOptions(batch_size="auto").batch_size})) == {"b": "auto"}


def test_memory_estimate_orders_the_modes():
    from utils.training.memory_estimate import estimate_gpu_gb, estimate_line

    default = estimate_gpu_gb(8, 8.0, "fp32", False, "adamw")
    assert default == pytest.approx(18.95)  # the measured figure it is scaled from
    lean = estimate_gpu_gb(8, 8.0, "bf16", True, "adamw8bit")
    assert lean < estimate_gpu_gb(8, 8.0, "bf16", False, "adamw8bit") < default
    assert "batch 2" in estimate_line(2, 11.0, "fp32", False, "adamw")
    assert "12 GB: batch" in estimate_line("auto", 11.0, "bf16", True, "adamw8bit")


def test_batch_size_auto_is_refused_for_several_ranks_and_allowed_on_one_gpu():
    from utils.errors import InvalidValue
    from utils.training.memory import check_batch_size

    check_batch_size("auto", cuda=True, ranks=1)
    check_batch_size(4, cuda=False, ranks=2)
    with pytest.raises(InvalidValue, match="--batch_size auto measures one GPU and this launch has 2 ranks"):
        check_batch_size("auto", cuda=True, ranks=2)


FREED_HOLES = """
import sys
import torch
from utils.training.allocator import START_MMAP_THRESHOLD, set_mmap_threshold
pinned = set_mmap_threshold(START_MMAP_THRESHOLD) if sys.argv[1] == "pin" else False
def anon() -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith("RssAnon")).split()[1]) * 1024
block = torch.ones(16 << 20, dtype=torch.uint8)
del block  # a freed 16 MiB block: glibc's threshold grows to its size
blocks = [torch.ones(4 << 20, dtype=torch.uint8) for _ in range(64)]
before = anon()
del blocks[::2]  # holes inside the heap, which trimming its top cannot give back
print(pinned, (before - anon()) / (32 * (4 << 20)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (/proc/self/status)")
def test_tensors_a_start_frees_go_back_to_the_system():
    """A start fixes malloc's mmap threshold low: half of 64 tensors of 4 MiB freed gives their memory back, where
    the default's grown threshold keeps it in the heap (utils/training/allocator.py)."""
    def freed(arm: str) -> tuple[str, float]:
        out = subprocess.run([sys.executable, "-c", FREED_HOLES, arm], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], float(out[1])

    pinned, returned = freed("pin")
    default, kept = freed("default")
    assert pinned == "True" and returned > 0.9, returned
    assert default == "False" and kept < 0.1, kept

"""Multi-GPU launches through the trainer's own launcher and torchrun: the CLI takes the arguments or environment
they give, only rank 0 writes, and every rank restores the same state. Without GPUs each rank trains alone (no
process group), which exercises everything here except gradient all-reduce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, read_events


def trainer_distribute(base, dataset, output, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", CUDA_VISIBLE_DEVICES="0,1")
    cmd = [sys.executable, "-m", "trainer.distribute", "--script", "utils/gpt_train.py", "--gpus", "0,1",
           "--train_csv", str(dataset.train_csv), "--eval_csv", str(dataset.eval_csv), "--output_path", str(output),
           "--base_model_dir", str(base), "--num_epochs", "2", "--batch_size", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def torchrun(base, dataset, output, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "utils/gpt_train.py",
           "--train_csv", str(dataset.train_csv), "--eval_csv", str(dataset.eval_csv), "--output_path", str(output),
           "--base_model_dir", str(base), "--num_epochs", "2", "--batch_size", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("launch", [trainer_distribute, torchrun])
def test_two_ranks_share_one_run_folder_and_only_rank_0_writes(launch, tiny_base, tiny_dataset, tmp_path):
    """trainer.distribute passes --rank/--group_id/--use_ddp, torchrun only its environment: either way the ranks
    agree on one run folder, rank 0 alone writes, and both resume from the same checkpoint."""
    first = launch(tiny_base, tiny_dataset, tmp_path, "--max_steps", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    runs = list((tmp_path / "run" / "training").iterdir())
    assert len(runs) == 1 and "-group_" in runs[0].name
    run = runs[0]
    assert (run / "trainer_0_log.txt").is_file() and (run / "trainer_1_log.txt").is_file()  # both ranks trained
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint_2.pth"]
    assert [e["step"] for e in read_events(run)] == [1, 2]  # one writer of progress, not two
    assert first.stdout.count("Fine-tuning from model.pth") == 2

    second = launch(tiny_base, tiny_dataset, tmp_path, "--custom_model", str(run / "checkpoint_2.pth"),
                    "--max_steps", "3")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("Resuming from checkpoint_2.pth: step 2, epoch 0, learning rate 5e-06") == 2
    assert sorted(p.name for p in run.glob("checkpoint_*.pth")) == ["checkpoint_2.pth", "checkpoint_3.pth"]
    assert len(list((tmp_path / "run" / "training").iterdir())) == 1


TORCHRUN_ENV = {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}


def test_launch_arguments_come_from_trainer_distribute_or_torchrun():
    from utils.training.distributed import Distributed

    plain = Distributed.from_launch(0, "", "false", environ={})
    assert (plain.rank, plain.use_ddp, plain.world_size) == (0, False, None)
    launcher = Distributed.from_launch(1, "group_2026_11_26-101500", "true", environ={"RANK": "1"})
    assert (launcher.rank, launcher.group_id, launcher.use_ddp, launcher.world_size) == (
        1, "group_2026_11_26-101500", True, None)
    first, second = (Distributed.from_launch(0, "", "false", environ=dict(TORCHRUN_ENV, RANK=r)) for r in "01")
    assert (first.rank, second.rank, first.use_ddp, first.world_size) == (0, 1, True, 2)
    assert first.group_id == second.group_id and first.group_id.startswith("group_")  # one launch, one folder


def test_torchrun_across_machines_is_refused_in_one_sentence(tiny_base, tiny_dataset, tmp_path):
    env = {**os.environ, **TORCHRUN_ENV, "WORLD_SIZE": "4", "RANK": "0"}
    cmd = [sys.executable, "utils/gpt_train.py", "--train_csv", str(tiny_dataset.train_csv), "--eval_csv",
           str(tiny_dataset.eval_csv), "--output_path", str(tmp_path / "out"), "--base_model_dir", str(tiny_base)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "across machines is not supported" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()

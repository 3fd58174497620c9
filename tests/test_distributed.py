"""Multi-GPU launches through the trainer's own launcher: the CLI takes the arguments it appends, only rank 0
writes, and every rank restores the same state. Without GPUs each rank trains alone (no process group), which
exercises everything here except gradient all-reduce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, read_events


def launch(base, dataset, output, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", CUDA_VISIBLE_DEVICES="0,1")
    cmd = [sys.executable, "-m", "trainer.distribute", "--script", "utils/gpt_train.py", "--gpus", "0,1",
           "--train_csv", str(dataset.train_csv), "--eval_csv", str(dataset.eval_csv), "--output_path", str(output),
           "--base_model_dir", str(base), "--num_epochs", "2", "--batch_size", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_ranks_share_one_run_folder_and_only_rank_0_writes(tiny_base, tiny_dataset, tmp_path):
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

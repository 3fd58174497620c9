"""Session fixtures: a tiny XTTS-v2 base folder and a small dataset, built offline once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from utils import testbed  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A base model folder in XTTS-v2's layout (model.pth in the released format); treat it as read-only."""
    return testbed.build_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> testbed.TinyDataset:
    """About 10 clips of 3-5 s with train/eval CSVs in coqui's format; treat it as read-only."""
    return testbed.build_dataset(tmp_path_factory.mktemp("tiny_dataset"))


def train_options(base: Path, dataset: testbed.TinyDataset, output: Path, **overrides):
    """Options for a few-second run on the test bed: 8 training clips, batch 2 -> 4 updates per epoch."""
    from utils.options import TrainOptions

    values = dict(train_csv=str(dataset.train_csv), eval_csv=str(dataset.eval_csv), output_path=str(output),
                  base_model_dir=str(base), num_epochs=2, batch_size=2, save_step=1000, keep_checkpoints=100)
    values.update(overrides)
    return TrainOptions(**values)


@pytest.fixture(scope="session")
def vocab(tmp_path_factory) -> Path:
    """The test bed's vocabulary (English letters only): the one a tiny base model has."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    testbed.build_vocab(path, testbed.SENTENCES)
    return path


@pytest.fixture(scope="session")
def train(tiny_base, tiny_dataset):
    """Run train_gpt in this process on the test bed: train(output, **option_overrides) -> TrainResult."""
    from utils.training.run import train_gpt

    def run(output: Path, **overrides):
        return train_gpt(train_options(tiny_base, tiny_dataset, output, **overrides))

    return run


@pytest.fixture(scope="session")
def reference_run(train, tmp_path_factory):
    """8 updates over 2 epochs, uninterrupted, with a checkpoint after every update (saving draws no randomness)."""
    return train(tmp_path_factory.mktemp("reference"), save_step=1)


def read_events(run_dir: Path, kind: str = "update") -> list[dict]:
    import json

    lines = (Path(run_dir) / "progress.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def assert_same_training_state(a: Path, b: Path) -> None:
    """Weights, every optimizer tensor, scheduler and step/epoch of two checkpoints are bit-identical."""
    import torch

    A = torch.load(a, weights_only=True, mmap=True)
    B = torch.load(b, weights_only=True, mmap=True)
    assert (A["step"], A["epoch"]) == (B["step"], B["epoch"])
    assert A["model"].keys() == B["model"].keys()
    differing = [k for k in A["model"] if not torch.equal(A["model"][k], B["model"][k])]
    assert not differing, f"{len(differing)} weights differ, e.g. {differing[:3]}"
    for oa, ob in zip(A["optimizer"], B["optimizer"], strict=True):
        assert oa["param_groups"] == ob["param_groups"]
        assert oa["state"].keys() == ob["state"].keys()
        for pid, state in oa["state"].items():
            for name, value in state.items():
                assert torch.equal(value, ob["state"][pid][name]), f"optimizer {name} of param {pid} differs"
    assert A["scheduler"] == B["scheduler"]
    run_a, run_b = A.get("run_state") or {}, B.get("run_state") or {}
    for key in ("best_loss", "epoch_batch", "batches_done"):
        assert run_a.get(key) == run_b.get(key), f"run_state {key} differs"


@pytest.fixture(scope="session")
def coqui_recipe_checkpoint(tiny_base, tiny_dataset, tmp_path_factory) -> tuple[Path, int]:
    """A checkpoint written by a plain coqui recipe run: (path, optimizer updates it holds). coqui saves
    `checkpoint_2.pth` after the third update (it saves before incrementing its counter)."""
    import subprocess

    out = tmp_path_factory.mktemp("coqui_recipe")
    subprocess.run([sys.executable, str(ROOT / "tests" / "coqui_recipe.py"), str(tiny_base), str(tiny_dataset.folder),
                    str(out), "--epochs", "1", "--save_step", "2"], check=True, capture_output=True, timeout=600)
    return next(out.rglob("checkpoint_2.pth")), 3


MOUNT_REFUSED = ("permission denied", "operation not permitted", "only root", "loop device", "no such device")


def mount_loop(image: Path, mount: Path) -> None:
    """`mount -o loop image mount`; skips the test, saying why, where this machine refuses loop mounts (a
    container without the privilege); any other failure of mount is an error."""
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())
        if any(word in reason.lower() for word in MOUNT_REFUSED):
            pytest.skip(f"mounting a loop device is not allowed here: {reason}")
        raise RuntimeError(f"mount -o loop {image} {mount} failed: {reason}")


@pytest.fixture
def make_small_filesystem(tmp_path) -> Callable[[int], Path]:
    """make(megabytes) -> the mount point of a real ext4 filesystem of that size (a loop-mounted image on disk, no
    reserved blocks), unmounted after the test. Skips, saying why, where this machine does not let us mount one."""
    mounts: list[Path] = []

    def make(megabytes: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a small filesystem needs root to mount a loop device")
        missing = [tool for tool in ("mount", "umount", "mkfs.ext4", "truncate") if shutil.which(tool) is None]
        if missing or not Path("/dev/loop-control").exists():
            pytest.skip(f"a small filesystem needs loop devices and {', '.join(missing) or 'mount'} (missing here)")
        image, mount = tmp_path / f"fs{len(mounts)}.img", tmp_path / f"fs{len(mounts)}"
        mount.mkdir()
        subprocess.run(["truncate", "-s", f"{megabytes}M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        mount_loop(image, mount)
        mounts.append(mount)
        return mount

    yield make
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def small_filesystem(make_small_filesystem) -> Path:
    """A real 500 MB ext4 filesystem of our own; remountable read-only. Room for one tiny-model checkpoint
    (~310 MB), not two."""
    return make_small_filesystem(500)

"""Randomness as a function of (seed, epoch, position), which is what makes a mid-epoch resume exact even with
loader workers: each sample is drawn from RNG seeded by its position, an epoch resumed at a position continues
from there, and the RNG states of python, numpy and torch are saved as plain tensors (weights_only-loadable)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class PositionSeededDataset(Dataset):
    """Wraps XTTS's training dataset, whose items are drawn with python's global `random`: each item is drawn
    from a generator seeded by (seed, epoch, index), and the caller's RNG state is left untouched."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.collate_fn = dataset.collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        saved = random.getstate()
        random.seed(f"{self.seed}:{self.epoch}:{index}")
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved)


class FromPositionSampler(Sampler[int]):
    """Indices start..n-1 in order: an epoch resumed at `start` continues with the samples it had not seen."""

    def __init__(self, n: int, start: int = 0) -> None:
        self.n, self.start = n, start

    def __iter__(self):
        return iter(range(self.start, self.n))

    def __len__(self) -> int:
        return self.n - self.start


def rng_state() -> dict[str, Any]:
    """python, numpy, torch (and CUDA) RNG states as tensors and plain values (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

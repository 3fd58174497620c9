"""Gradients averaged across ranks: coqui's trainer keeps only its DDP wrapper's `.module` and trains through
that, so the wrapper's all-reduce never fires (and it sets DDP up only for CUDA). Here the forward runs through
DistributedDataParallel itself, on CUDA (NCCL) and without (gloo)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from utils.training.distributed import Distributed


class TrainStep(torch.nn.Module):
    """What DDP wraps: the optimizer's parameters (the gradients it averages; the frozen DVAE, mel extractors and
    vocoder stay out) with the model's train_step as the forward."""

    def __init__(self, train_step: Callable[..., Any], params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self.trained = torch.nn.ParameterList(params)  # the same Parameter objects: nothing is copied
        self.train_step = train_step

    def forward(self, batch: dict[str, Any], criterion: Any) -> Any:
        return self.train_step(batch, criterion)


def wrap_for_ddp(model: Any, optimizers: list[torch.optim.Optimizer], dist: Distributed) -> DistributedDataParallel:
    """DDP over the trained parameters; building it makes every rank's weights rank 0's."""
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
    return DistributedDataParallel(TrainStep(model.train_step, params), device_ids=dist.device_ids())


def forward(ddp: DistributedDataParallel, batch: dict[str, Any], criterion: Any, *, sync: bool) -> Any:
    """One forward through DDP; `sync` False inside an accumulation window (the gradients are averaged once, in
    the backward of the update's last batch)."""
    with contextlib.nullcontext() if sync else ddp.no_sync():
        return ddp(batch, criterion)


def weight_gradient(loss: torch.Tensor, weight: float) -> torch.Tensor:
    """`loss` with the same value (logged as it is) and its gradient times `weight`: a rank's share of an uneven
    global batch counts by its number of samples (0 for a stand-in batch)."""
    return loss + (weight - 1.0) * (loss - loss.detach())

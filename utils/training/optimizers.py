"""Which optimizer a run trains with (--optimizer adamw | adamw8bit), and which one a checkpoint holds.

AdamW8bit (bitsandbytes) keeps each moment in 8 bits with a per-block scale: about a quarter of AdamW's optimizer
memory. Its state dict holds `state1`/`state2` (and quantisation maps) instead of `exp_avg`/`exp_avg_sq`, so the
two cannot stand in for each other: a resume must use the optimizer its checkpoint holds."""

from __future__ import annotations

from typing import Any

import torch

from utils.errors import InvalidValue

ADAMW, ADAMW_8BIT = "adamw", "adamw8bit"
BNB_STATE_KEY = "__bnb_optimizer_quant_state__"  # where bitsandbytes keeps a parameter's quantised moments
BNB_PIN = "bitsandbytes==0.50.2"


def to_8bit(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """bitsandbytes' AdamW8bit over the same parameter groups, learning rate, betas, eps and weight decay as
    coqui's AdamW `opt` (which has taken no step yet)."""
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise InvalidValue(f"--optimizer {ADAMW_8BIT} needs bitsandbytes, which is not installed here ({e}): "
                           f"install it with 'pip install {BNB_PIN}', or use --optimizer {ADAMW}.") from e
    d = opt.defaults
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"], "lr": g["lr"]} for g in opt.param_groups]
    eight = bnb.optim.AdamW8bit(groups, lr=d["lr"], betas=tuple(d["betas"]), eps=d["eps"],
                                weight_decay=d["weight_decay"])
    if hasattr(opt, "_group_names"):
        eight._group_names = opt._group_names  # coqui's names of the groups, kept for its logging
    return eight


def optimizer_name(opt: torch.optim.Optimizer) -> str:
    """adamw8bit for bitsandbytes' 8-bit AdamW, else adamw."""
    return ADAMW_8BIT if type(opt).__module__.startswith("bitsandbytes") else ADAMW


def held_optimizer(recorded: str | None, states: list[Any]) -> str:
    """The optimizer a checkpoint holds: the name it records, else read from its state (older files, coqui's)."""
    if recorded:
        return recorded
    for state in states:
        for param_state in (state or {}).get("state", {}).values():
            if isinstance(param_state, dict) and (BNB_STATE_KEY in param_state or "state1" in param_state):
                return ADAMW_8BIT
    return ADAMW


def optimizer_mismatch(opt: torch.optim.Optimizer, state: dict[str, Any]) -> str | None:
    """What keeps `state` from fitting `opt` (torch checks group sizes, not shapes), or None."""
    groups = state.get("param_groups", [])
    ours = [len(g["params"]) for g in opt.param_groups]
    theirs = [len(g["params"]) for g in groups]
    if ours != theirs:
        return f"its optimizer has parameter groups of sizes {theirs}, this model {ours}"
    params = [p for g in opt.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    for param, pid in zip(params, ids, strict=True):
        avg = state.get("state", {}).get(pid, {}).get("exp_avg")
        if isinstance(avg, torch.Tensor) and avg.shape != param.shape:
            return f"its optimizer holds a moment of shape {tuple(avg.shape)} for a weight of {tuple(param.shape)}"
    return None

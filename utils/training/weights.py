"""A training checkpoint's weights into the model: strictly, and for a resume without a second copy (the model's
freshly built weights are released before the file is read, then the model adopts the file's tensors)."""

from __future__ import annotations

from typing import Any

import torch

from utils.checkpoints.keys import CheckpointError


def load_weights(model: torch.nn.Module, state: dict[str, Any], source: Any, *, assign: bool = False) -> None:
    """Every weight of a training checkpoint into `model`, strictly. `assign`: the model takes the checkpoint's
    tensors as its own instead of copying them (no second copy of the weights while both are held)."""
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as e:  # missing/unexpected keys or shapes: another XTTS size or another model
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"Checkpoint {source} does not fit this model ({detail}). Use a checkpoint of the "
                              f"same XTTS size, or the matching --base_model_dir.") from e


def adopt_weights(model: torch.nn.Module, state: dict[str, Any], source: Any) -> None:
    """A resume's weights, taken over before the optimizer exists (it is built over the adopted parameters)."""
    load_weights(model, state, source, assign=True)


def holds_tensors(model: torch.nn.Module, state: dict[str, Any]) -> bool:
    """True when each of the model's weights is the very tensor `state` holds (adopted, not a copy)."""
    live = model.state_dict(keep_vars=True)
    return live.keys() == state.keys() and all(
        live[k].data_ptr() == v.data_ptr() and live[k].shape == v.shape for k, v in state.items())


def release_weights(model: torch.nn.Module) -> None:
    """Swap every weight and persistent buffer for a meta tensor of its shape (no memory), so that reading a resume's
    checkpoint does not hold the freshly built weights beside the file's; `adopt_weights` then fills them."""
    names = set(model.state_dict(keep_vars=True))
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, param in list(module._parameters.items()):
            if param is not None and prefix + name in names:
                module._parameters[name] = torch.nn.Parameter(torch.empty_like(param, device="meta"),
                                                               requires_grad=param.requires_grad)
        for name, buf in list(module._buffers.items()):
            if buf is not None and prefix + name in names:
                module._buffers[name] = torch.empty_like(buf, device="meta")

"""--precision fp32 | fp16 | bf16 as coqui's trainer takes it, refused in one sentence where this machine cannot
run it. fp16 autocasts on a CUDA GPU with a grad scaler; bf16 autocasts without one, on a GPU that supports it or
on the CPU (torch's CPU autocast); fp32 is plain."""

from __future__ import annotations

import torch

from utils.errors import InvalidValue

FP32, FP16, BF16 = "fp32", "fp16", "bf16"


def coqui_precision(precision: str) -> tuple[bool, str]:
    """coqui's (mixed_precision, precision) for one of ours; coqui makes a grad scaler only for fp16 on CUDA."""
    return precision != FP32, precision if precision != FP32 else FP16


def check_precision(precision: str, cuda: bool | None = None) -> None:
    """InvalidValue when this machine cannot train in `precision` (cuda: whether training runs on a GPU)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if precision == FP16 and not cuda:
        raise InvalidValue("--precision fp16 (or --mixed_precision) needs a CUDA GPU, and none is visible: on the CPU "
                           "train with --precision bf16 or fp32.")
    if precision == BF16 and cuda and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name()
        raise InvalidValue(f"--precision bf16 needs a GPU with bfloat16 support (NVIDIA Ampere or newer), and "
                           f"{name} has none: use --precision fp16 or fp32.")

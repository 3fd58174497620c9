"""The GPU memory a training choice needs, estimated before Start (the WebUI's Memory group): the figure measured
at XTTS-v2 size, scaled by batch, clip length, precision, gradient checkpointing and optimizer. No torch here."""

from __future__ import annotations

AUTO = "auto"

# From benchmarks/RESULTS.md, one H100, XTTS-v2 size, batch 8 of 6-10 s clips, fp32, AdamW: 18.95 GB peak; the
# trained GPT has about 420M weights, the whole model (GPT, DVAE, HiFi-GAN) 2.25 GB of fp32 weights.
MEASURED_PEAK_GB, MEASURED_BATCH, MEASURED_CLIP_S = 18.95, 8, 8.0
WEIGHTS_GB, GPT_WEIGHTS = 2.25, 420e6
CONTEXT_GB = 0.5  # CUDA context and allocator slack
# Assumed until bench_gpu.py's table is measured (see README, "Fitting a GPU"): activations kept with gradient
# checkpointing, and with bf16/fp16 autocast, relative to fp32 without checkpointing.
CHECKPOINTING_FACTOR, HALF_PRECISION_FACTOR = 0.35, 0.6


def static_gb(optimizer: str) -> float:
    """Weights, the GPT's gradients and the optimizer's moments, in GB."""
    moments = GPT_WEIGHTS * (2 if optimizer == "adamw8bit" else 8) / 1e9
    return CONTEXT_GB + WEIGHTS_GB + GPT_WEIGHTS * 4 / 1e9 + moments


def activation_gb_per_sample(clip_seconds: float, precision: str, checkpointing: bool) -> float:
    per_sample = (MEASURED_PEAK_GB - static_gb("adamw")) / MEASURED_BATCH * clip_seconds / MEASURED_CLIP_S
    per_sample *= CHECKPOINTING_FACTOR if checkpointing else 1.0
    return per_sample * (HALF_PRECISION_FACTOR if precision in ("fp16", "bf16") else 1.0)


def estimate_gpu_gb(batch_size: int, clip_seconds: float, precision: str, checkpointing: bool, optimizer: str) -> float:
    """Peak GPU memory (GB) of training at XTTS-v2 size with these options: the measured fp32 figure, scaled."""
    return static_gb(optimizer) + batch_size * activation_gb_per_sample(clip_seconds, precision, checkpointing)


def estimate_line(batch_size: int | str, clip_seconds: float, precision: str, checkpointing: bool,
                  optimizer: str) -> str:
    """The WebUI's one line before Start."""
    basis = ("from one H100 measurement (batch 8, fp32, AdamW); other modes scaled by assumed factors until the GPU "
             "benchmark is run")
    if batch_size == AUTO:
        per = activation_gb_per_sample(clip_seconds, precision, checkpointing)
        fits = {gb: max(int((gb - static_gb(optimizer)) // per), 0) for gb in (8, 12, 16, 24)}
        shown = ", ".join(f"{gb} GB: batch {b}" if b else f"{gb} GB: none" for gb, b in fits.items())
        return f"Estimated largest batch with {clip_seconds:g} s clips: {shown} ({basis})."
    gb = estimate_gpu_gb(int(batch_size), clip_seconds, precision, checkpointing, optimizer)
    return f"Estimated GPU memory: {gb:.1f} GB for batch {batch_size} of clips up to {clip_seconds:g} s ({basis})."

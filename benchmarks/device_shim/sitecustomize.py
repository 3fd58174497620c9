"""Audio shim for the GPU benchmark on the lent device machine only (benchmarks/device_run.sh puts this folder on
PYTHONPATH, so every process it starts, the measured ones included, imports this file at start-up).

Why: XTTS's dataset reads clips with `torchaudio.load`, which in torchaudio 2.9+ decodes through torchcodec and
FFmpeg's shared libraries; that machine has neither (and nothing can be installed there from outside), and
`import TTS` refuses to start when no module named torchcodec can be found. What this does:

- `torchaudio.load` is replaced, right after torchaudio is imported, by a reader of the same signature and result
  (float32 tensor [channels, frames], sample rate) that decodes through soundfile (libsndfile, carried as a wheel).
  Our CLI and the coqui recipe run in the same environment, so both read their audio this same way.
- When no real torchcodec is installed, a placeholder module of that name is found last (after every real
  finder), so coqui's start-up check passes; it has no attributes.

Nothing is printed. XTTS_BENCH_AUDIO_SHIM=soundfile is set so the benchmark can say how audio was read. Any other
sitecustomize module on the path (a distribution's) is still run afterwards.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

HERE = str(Path(__file__).resolve().parent)
os.environ["XTTS_BENCH_AUDIO_SHIM"] = "soundfile"


def load_with_soundfile(uri: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
                        channels_first: bool = True, format: str | None = None, buffer_size: int = 4096,
                        backend: str | None = None) -> tuple[Any, int]:
    """torchaudio.load's contract (normalized float32, [channel, time] by default), decoded by libsndfile."""
    import soundfile as sf
    import torch

    stop = None if num_frames < 0 else frame_offset + num_frames
    data, rate = sf.read(uri, start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    samples = torch.from_numpy(data)  # [time, channel]
    return (samples.T.contiguous() if channels_first else samples), rate


class _PatchAfterLoad(importlib.abc.Loader):
    """Runs torchaudio's own loader, then swaps in `load_with_soundfile`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        module.load = load_with_soundfile

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _TorchaudioFinder(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: finds the real torchaudio through the other finders and wraps its loader."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torchaudio":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchAfterLoad(spec.loader)
                return spec
        return None


class _PlaceholderLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        def missing(name: str) -> Any:
            raise AttributeError(f"torchcodec is not installed here (benchmark audio shim): torchcodec.{name} is "
                                 f"unavailable; audio is read through soundfile.")

        module.__getattr__ = missing


class _TorchcodecPlaceholder(importlib.abc.MetaPathFinder):
    """Last on sys.meta_path: answers for `torchcodec` only when no real one was found."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torchcodec":
            return None
        return importlib.machinery.ModuleSpec(fullname, _PlaceholderLoader(), origin="benchmark audio shim")


def _run_next_sitecustomize() -> None:
    """Execute the sitecustomize this file shadows, if one lies further down sys.path."""
    rest = [p for p in sys.path if p and os.path.abspath(p) != HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == __file__:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken distribution hook must not stop the benchmark
        print(f"benchmark audio shim: the next sitecustomize failed: {e}", file=sys.stderr)


sys.meta_path.insert(0, _TorchaudioFinder())
sys.meta_path.append(_TorchcodecPlaceholder())
_run_next_sitecustomize()

"""Predicted mean opinion score: DNSMOS P.835 (Microsoft's non-intrusive speech-quality model), the ONNX
models of the `speechmos` package run with onnxruntime; the overall (OVRL) score, 1 (bad) to 5 (excellent)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from utils.quality.errors import ModelUnavailable

WINDOW_S = 9  # DNSMOS rates 9 s windows


def _model_folder() -> Path:
    spec = importlib.util.find_spec("speechmos")
    folder = Path(spec.origin).parent / "dnsmos_models" if spec is not None and spec.origin else None
    if folder is None or not (folder / "sig_bak_ovr.onnx").is_file() or not (folder / "model_v8.onnx").is_file():
        raise ModelUnavailable("The DNSMOS models (package speechmos) are not installed: run make setup.")
    return folder


class Dnsmos:
    """DNSMOS P.835, both ONNX sessions created once by `load()`."""

    def __init__(self) -> None:
        self._model = None

    def load(self):
        """Create the ONNX sessions now; raises `ModelUnavailable` when speechmos is missing."""
        if self._model is None:
            folder = _model_folder()
            from speechmos.dnsmos import DNSMOS

            self._model = DNSMOS(str(folder / "sig_bak_ovr.onnx"), str(folder / "model_v8.onnx"))
        return self._model

    def score(self, audio: np.ndarray) -> float | None:
        """The overall MOS of `audio` (mono float32, 16 kHz; DNSMOS repeats a clip under 9 s to 9 s), or None
        for empty or silent audio, which it cannot rate."""
        model = self.load()
        if not len(audio) or not np.any(audio):  # DNSMOS loops forever on an empty clip
            return None
        result = model(np.clip(audio, -1.0, 1.0).astype(np.float32), 16000, False)
        value = float(result["ovrl_mos"])
        return value if math.isfinite(value) else None

    def window_scores(self, audio: np.ndarray) -> tuple[float, float] | None:
        """(background, overall) DNSMOS P.835 scores of `audio` (mono float32, 16 kHz) from consecutive 9 s
        windows (a shorter clip repeated to 9 s), without the P.808 model: for every clip of a dataset, at a
        quarter of `score`'s cost on a 3 s clip. None for empty or silent audio."""
        model = self.load()
        if not len(audio) or not np.any(audio):
            return None
        window = WINDOW_S * 16000 + 160  # the ONNX model's fixed input length (144160 samples)
        count = max(1, math.ceil(len(audio) / window))
        tiled = np.resize(np.clip(audio, -1.0, 1.0).astype(np.float32), count * window).reshape(count, window)
        raw = model.onnx_sess.run(None, {"input_1": tiled})[0]
        scores = [model.get_polyfit_val(sig, bak, ovr, False) for sig, bak, ovr in raw]
        background, overall = (float(np.mean([s[i] for s in scores])) for i in (1, 2))
        return (background, overall) if math.isfinite(background) and math.isfinite(overall) else None

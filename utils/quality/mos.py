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


def _session(path: Path, threads: int | None):
    """An onnxruntime CPU session; with `threads`, on that many threads, which sleep rather than spin between
    calls. None: onnxruntime's defaults, as speechmos makes them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Dnsmos:
    """DNSMOS P.835, both ONNX sessions created once by `load()`. `threads`: onnxruntime's threads per call,
    without spin-waiting between calls (the dataset gate runs DNSMOS on one thread beside Whisper, which has
    the cores); None: onnxruntime's defaults (every core, spinning)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._model = None

    def load(self):
        """Create the ONNX sessions now; raises `ModelUnavailable` when speechmos is missing."""
        if self._model is None:
            folder = _model_folder()
            from speechmos.dnsmos import DNSMOS

            class Sessions(DNSMOS):  # speechmos's scoring on sessions made with our options
                def __init__(self, primary: Path, p808: Path, threads: int | None) -> None:
                    self.primary_model_path = str(primary)
                    self.onnx_sess = _session(primary, threads)
                    self.p808_onnx_sess = _session(p808, threads)

            self._model = Sessions(folder / "sig_bak_ovr.onnx", folder / "model_v8.onnx", self.threads)
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

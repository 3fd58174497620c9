"""Listen to the voice while it trains: synthesise a fixed set of sentences with the current weights and score
them (utils/quality), without perturbing training. Everything XTTS's inference adds to the model is removed
again and every RNG is restored, so a run with quality evaluations ends bit-identical to one without."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import InvalidValue
from utils.fsio import write_json_atomic
from utils.quality import duration
from utils.quality.scorer import Scorer
from utils.training.sampling import rng_state, set_rng_state
from utils.voice.inference import conditioning, speak
from utils.xtts import OUTPUT_SAMPLE_RATE, SAMPLE_RATE, char_limit

SAMPLES_DIR = "samples"
SCORES_FILE = "scores.json"
REFERENCE_NAME = "reference.wav"
EVAL_SENTENCES = 3  # eval-set transcripts among the default sentences
LENGTH_CAP = 2.0  # generation stops at this many times the duration the text should take
SCORE_NAMES = ("cer", "speaker_similarity", "mos", "duration_ratio")


@dataclass
class SampleScore:
    """One synthesised sentence and its scores; `runaway`: generation ran into the length cap."""

    path: str
    text: str
    transcript: str
    cer: float
    speaker_similarity: float | None
    mos: float | None
    duration_ratio: float | None
    runaway: bool


@dataclass
class QualityReport:
    """One evaluation: the means over the sentences (None where no sentence could be measured) and each sample."""

    step: int
    cer: float | None
    speaker_similarity: float | None
    mos: float | None
    duration_ratio: float | None
    reference: str
    samples: list[SampleScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scores(self) -> dict[str, float | None]:
        """The four means, as checkpoints and listings record them."""
        return {name: getattr(self, name) for name in SCORE_NAMES}

    @classmethod
    def from_samples(cls, step: int, reference: str, samples: list[SampleScore]) -> QualityReport:
        def mean(name: str) -> float | None:
            values = [getattr(s, name) for s in samples if getattr(s, name) is not None]
            return round(statistics.fmean(values), 4) if values else None

        return cls(step, *(mean(name) for name in SCORE_NAMES), reference=reference, samples=samples)


def read_sentences(path: Path) -> list[str]:
    """One sentence per line; blank lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidValue(f"--quality_sentences {path} cannot be read ({e}): give a UTF-8 text file, one "
                           f"sentence per line.") from e
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise InvalidValue(f"--quality_sentences {path} holds no sentence: write one sentence per line.")
    return sentences


def default_sentences(eval_texts: list[str], language: str) -> list[str]:
    """A few eval-set transcripts (never trained on), one short phrase of two or three words and one long
    sentence: the two shapes fine-tuned XTTS models fail on (hallucinating on short text, running on)."""
    texts = [t.strip() for t in eval_texts if t.strip()]
    if not texts:
        raise InvalidValue("The eval set has no transcripts to synthesise: give --quality_sentences FILE.")
    chosen = texts[:EVAL_SENTENCES]
    short = " ".join(min(texts, key=len).split()[:3])
    long, limit = "", char_limit(language)
    for text in sorted(texts, key=len, reverse=True):
        candidate = f"{long} {text}".strip()
        if len(candidate) > limit:
            break
        long = candidate
    return list(dict.fromkeys([*chosen, short, long or max(texts, key=len)]))


def token_cap(text: str, rate: float, code_stride: int) -> int:
    """Audio tokens allowed for `text`: LENGTH_CAP times its duration at `rate` characters per second."""
    seconds = duration.letters(text) / rate if rate > 0 else 0.0
    return max(8, int(LENGTH_CAP * seconds * SAMPLE_RATE / code_stride) + 1)


def evaluation_threads() -> int:
    """torch's CPU threads for an evaluation: every core this process may use, or OMP_NUM_THREADS where the user
    set it. Training runs torch on one thread (coqui's XTTS dataset module sets it), and waits for the evaluation:
    on 2 cores that made an evaluation 1.7x faster on the test bed. untouched() puts training's count back."""
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        return int(limit)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def untouched(xtts: Any) -> Iterator[None]:
    """Run inference on the training model and leave it as it was: RNG states, each module's train/eval flag,
    and no attribute of XTTS's inference left behind (they would appear in checkpoints)."""
    rng, threads = rng_state(), torch.get_num_threads()
    modes = {name: module.training for name, module in xtts.named_modules()}
    keys = list(xtts.state_dict().keys())
    added = [(owner, name) for owner, name in ((xtts.gpt, "gpt_inference"), (xtts.gpt.gpt, "wte"))
             if not hasattr(owner, name)]  # what init_gpt_for_inference sets
    try:
        yield
    finally:
        for owner, name in added:
            if hasattr(owner, name):
                delattr(owner, name)
        for name, module in xtts.named_modules():
            module.training = modes.get(name, module.training)
        set_rng_state(rng)
        torch.set_num_threads(threads)  # scoring may have changed it (see utils/whisper.torch_threads_kept)
    if list(xtts.state_dict().keys()) != keys:
        raise RuntimeError("Quality evaluation changed the model's parameters: this is a bug, please report it.")


@dataclass
class QualityEvaluator:
    """Synthesises `sentences` in the voice of `reference` and scores them; the Scorer's models load once."""

    scorer: Scorer
    sentences: list[str]
    reference: Path
    language: str
    seed: int = 0
    run_dir: Path = Path(".")

    def evaluate(self, xtts: Any, step: int) -> QualityReport:
        """samples/step_<step>/: one WAV per sentence, the reference and scores.json; returns the report."""
        folder = self.run_dir / SAMPLES_DIR / f"step_{step}"
        folder.mkdir(parents=True, exist_ok=True)
        with untouched(xtts):  # the scorers run torch and CTranslate2 in this process too
            torch.set_num_threads(evaluation_threads())
            wavs = self.synthesise(xtts)
            shutil.copyfile(self.reference, folder / REFERENCE_NAME)
            samples = [self.score(wav, text, folder / f"{i:02d}.wav", runaway)
                       for i, (text, wav, runaway) in enumerate(wavs)]
        report = QualityReport.from_samples(step, str(folder / REFERENCE_NAME), samples)
        write_json_atomic(folder / SCORES_FILE, report.to_dict())
        return report

    def synthesise(self, xtts: Any) -> list[tuple[str, np.ndarray, bool]]:
        """Each sentence as (text, samples, ran into the cap), from the model as it stands."""
        rate = self.scorer.reference_rate(self.reference, self.language) or duration.default_rate(self.language)
        stride = int(xtts.args.gpt_code_stride_len)
        out = []
        with untouched(xtts), torch.inference_mode():
            xtts.gpt.init_gpt_for_inference(kv_cache=xtts.args.kv_cache, use_deepspeed=False)
            xtts.eval()
            voice = conditioning(xtts, self.reference)
            for i, text in enumerate(self.sentences):
                cap = token_cap(text, rate, stride)
                wav = speak(xtts, text, self.language, voice, seed=self.seed + i, max_new_tokens=cap)
                capped_s = cap * stride / SAMPLE_RATE
                out.append((text, wav, len(wav) / OUTPUT_SAMPLE_RATE >= 0.95 * capped_s))
        return out

    def score(self, wav: np.ndarray, text: str, path: Path, runaway: bool) -> SampleScore:
        import soundfile as sf

        sf.write(path, wav, OUTPUT_SAMPLE_RATE)
        scores = self.scorer.score((wav, OUTPUT_SAMPLE_RATE), text, self.reference, language=self.language)
        return SampleScore(path=str(path), text=text, transcript=scores.transcript, cer=scores.cer,
                           speaker_similarity=scores.speaker_similarity, mos=scores.mos,
                           duration_ratio=scores.duration_ratio, runaway=runaway)


@dataclass(frozen=True)
class QualitySetup:
    """What a run's quality evaluations need from its options and data."""

    whisper_model: str | None
    sentences_file: str | None
    reference_wav: str | None
    language: str
    seed: int
    run_dir: Path


def build_evaluator(setup: QualitySetup, train_samples: list[dict], eval_samples: list[dict],
                    recorded_reference: str | None = None) -> QualityEvaluator:
    """Load the scorers once and settle the sentences and the reference: --reference_wav, else the one this run
    recorded (a resume keeps its choice), else one picked from the training clips (printed)."""
    from utils.quality.reference import pick_reference

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = Scorer(setup.whisper_model, language=setup.language, device=device).load()
    sentences = (read_sentences(Path(setup.sentences_file)) if setup.sentences_file
                 else default_sentences([s["text"] for s in eval_samples], setup.language))
    if setup.reference_wav:
        reference = Path(setup.reference_wav)
        if not reference.is_file():
            raise InvalidValue(f"--reference_wav {reference} does not exist: give a clip of the speaker.")
    elif recorded_reference and Path(recorded_reference).is_file():
        reference = Path(recorded_reference)
    else:
        choice = pick_reference([Path(s["audio_file"]) for s in train_samples], scorer)
        print(choice.describe(), flush=True)
        reference = choice.path
    return QualityEvaluator(scorer, sentences, reference, setup.language, seed=setup.seed, run_dir=setup.run_dir)

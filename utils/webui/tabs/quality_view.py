"""The Train tab's quality view, without widgets: the score plots (CER, speaker similarity, MOS against the update,
the step-0 scores as the baseline) and the sample player's page (a step's samples beside the reference, or two
steps side by side), from a run's History (utils/webui/run_history.py)."""

from __future__ import annotations

import filecmp
import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from utils.webui.run_history import Evaluation, History

PLOT_COLUMNS = ("update", "value", "series")
SERIES_RUN, SERIES_BASELINE = "during training", "step 0 (before training)"
SERIES_COLORS = {SERIES_RUN: "#2563eb", SERIES_BASELINE: "#9ca3af"}
# (score key in the events, axis title, the plot's label): what each plot shows, in the order the page shows them
METRICS = (("cer", "CER", "CER (lower is better)"),
           ("speaker_similarity", "similarity", "Speaker similarity (higher is closer)"),
           ("mos", "MOS", "MOS (higher is better)"))
FILE_ROUTE = "gradio_api/file="  # Gradio serves files of its allowed paths here (relative to the page)


def quality_frame(history: History, metric: str) -> pd.DataFrame | None:
    """One score's means against the update, and the step-0 evaluation's value as a flat line across the run;
    None (an empty plot) before the first evaluation. Both series are always present (Gradio's LinePlot keeps
    the colour categories of the first table it draws): one without points gets a NaN point, drawn as nothing."""
    points = [(q.step, getattr(q.event, metric)) for q in history.quality]
    points = [(s, float(v)) for s, v in points if isinstance(v, int | float)]
    if not history.quality:
        return None
    first, last = history.quality[0].step, max(q.step for q in history.quality)
    rows = [(s, v, SERIES_RUN) for s, v in points] or [(first, math.nan, SERIES_RUN)]
    baseline = history.evaluation(0)
    value = None if baseline is None else getattr(baseline.event, metric)
    if isinstance(value, int | float):
        rows += [(0, float(value), SERIES_BASELINE), (max(last, 1), float(value), SERIES_BASELINE)]
    else:
        rows.append((first, math.nan, SERIES_BASELINE))
    return pd.DataFrame(rows, columns=list(PLOT_COLUMNS)).astype({"update": int, "value": float, "series": str})


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def scores_text(scores: Any) -> str:
    """'CER 0.41 · similarity 0.62 · MOS 2.1 · duration 1.08' of an event or a sample (attributes or keys)."""
    get = scores.get if isinstance(scores, dict) else lambda k: getattr(scores, k, None)
    return (f"CER {_num(get('cer'))} · similarity {_num(get('speaker_similarity'))} · MOS {_num(get('mos'), 1)} · "
            f"duration {_num(get('duration_ratio'))}")


def step_label(evaluation: Evaluation) -> str:
    name = "step 0 (before training)" if evaluation.step == 0 else f"step {evaluation.step}"
    return f"{name} · {scores_text(evaluation.event)}"


def step_choices(history: History) -> list[tuple[str, str]]:
    """(label, step) of every evaluation, newest first: what the player's step pickers offer."""
    return [(step_label(q), str(q.step)) for q in sorted(history.quality, key=lambda q: q.step, reverse=True)]


def summary_text(run_dir: Path | None, history: History) -> str:
    """One line over the plots: which run they show, the latest scores against the baseline's."""
    if run_dir is None:
        return "No run to show yet: start training, or pick a checkpoint of a run above."
    problems = "".join(f"\n\n⚠️ {p}" for p in history.problems)
    if not history.quality:
        return (f"Run `{run_dir.name}`: no quality evaluations recorded (train with quality_every above 0 to "
                f"hear and score samples).{problems}")
    latest, baseline = history.quality[-1], history.evaluation(0)
    text = f"Run `{run_dir.name}`: {len(history.quality)} evaluations; latest {step_label(latest)}"
    if baseline is not None and baseline is not latest:
        text += f"; before training: {scores_text(baseline.event)}"
    return text + problems


def file_url(path: Path, roots: list[Path]) -> str | None:
    """The page-relative URL Gradio serves `path` at, or None when it lies outside the folders it serves."""
    resolved = path.resolve()
    if not resolved.is_file() or not any(resolved.is_relative_to(r) for r in roots):
        return None
    return FILE_ROUTE + quote(str(resolved))


def sample_path(evaluation: Evaluation, recorded: str) -> Path:
    """A sample or reference file of an evaluation: the recorded path, or, when it is not absolute (a run
    started with a relative --output_path), the file of that name in its step folder."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    return evaluation.run_dir / "samples" / f"step_{evaluation.step}" / path.name


def _audio(evaluation: Evaluation, recorded: str, url: Callable[[Path], str | None], what: str) -> str:
    if not recorded:
        return "<em>no file recorded</em>"
    path = sample_path(evaluation, recorded)
    src = url(path)
    if src is None:
        return f"<em>{html.escape(path.name)} is missing or outside the work folders</em>"
    return (f'<audio controls preload="metadata" class="sample-audio" data-step="{evaluation.step}" '
            f'data-what="{html.escape(what)}" src="{html.escape(src)}"></audio>')


def _sample_cell(evaluation: Evaluation, sample: dict[str, Any] | None, url: Callable[[Path], str | None]) -> str:
    if sample is None:
        return "<td><em>not among this step's sentences</em></td>"
    runaway = " · <b>ran into the length cap</b>" if sample.get("runaway") else ""
    heard = html.escape(str(sample.get("transcript") or ""))
    return (f'<td>{_audio(evaluation, str(sample.get("path") or ""), url, "sample")}<br>heard: '
            f'"{heard}"<br><small>{html.escape(scores_text(sample))}{runaway}</small></td>')


def _references(shown: list[Evaluation], url: Callable[[Path], str | None]) -> str:
    """The reference clip once, or each step's when the two steps used different ones."""
    paths = [sample_path(q, q.event.reference) if q.event.reference else None for q in shown]
    if len(shown) == 2 and all(p is not None and p.is_file() for p in paths) \
            and filecmp.cmp(paths[0], paths[1], shallow=False):
        shown, paths = shown[:1], paths[:1]
    if len(shown) == 1:
        player = _audio(shown[0], str(paths[0] or ""), url, "reference")
        return f"<div>Reference (the voice it speaks in): {player}</div>"
    return "".join(f"<div>Reference of step {q.step}: {_audio(q, str(p or ''), url, 'reference')}</div>"
                   for q, p in zip(shown, paths, strict=True))


def player_html(history: History, step: str | int | None, compare: str | int | None,
                url: Callable[[Path], str | None]) -> str:
    """The samples of `step` (and of `compare`, side by side), one row per sentence, under the reference."""
    chosen = [history.evaluation(int(s)) for s in (step, compare) if str(s).strip().isdigit()]
    shown = [q for q in chosen if q is not None]
    if len(shown) == 2 and shown[0].step == shown[1].step:
        shown = shown[:1]
    if not shown:
        text = "Pick a step to hear its samples." if history.quality else "No samples yet."
        return f'<div id="sample-player" data-steps=""><em>{text}</em></div>'
    texts: list[str] = []
    for q in shown:
        texts += [s.get("text", "") for s in q.event.samples if s.get("text", "") not in texts]
    head = "".join(f"<th>{html.escape(step_label(q))}</th>" for q in shown)
    rows = []
    for text in texts:
        cells = "".join(_sample_cell(q, next((s for s in q.event.samples if s.get("text", "") == text), None), url)
                        for q in shown)
        rows.append(f"<tr><td>{html.escape(text)}</td>{cells}</tr>")
    steps = " ".join(str(q.step) for q in shown)
    return (f'<div id="sample-player" data-steps="{steps}">{_references(shown, url)}'
            f'<table><tr><th>Sentence</th>{head}</tr>{"".join(rows)}</table></div>')

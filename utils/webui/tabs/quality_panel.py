"""The Train tab's quality panel: score plots over the whole run and a sample player, for the run being trained
(else the run of the checkpoint picked above, else the last job's)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr

from utils.webui.context import ANTICIPATED, WebUIContext
from utils.webui.run_history import History, is_run_folder
from utils.webui.tabs.quality_view import (
    METRICS,
    PLOT_COLUMNS,
    SERIES_COLORS,
    file_url,
    player_html,
    quality_frame,
    step_choices,
    summary_text,
)

POLL_S = 2.0
HELP = ("Every `quality_every` updates training speaks a few fixed sentences in the reference voice and scores "
        "them: **CER** (what Whisper hears against the text; lower is better, 0 is every character right), "
        "**speaker similarity** (to the reference; higher is closer) and **MOS** (DNSMOS, 1-5; higher sounds "
        "cleaner). The grey line is step 0, the starting weights: fine-tuning should beat it.")


@dataclass
class QualityPanel:
    """The panel's widgets that tests and other handlers refer to."""

    plots: list[gr.LinePlot]
    step: gr.Dropdown
    compare: gr.Dropdown
    player: gr.HTML
    summary: gr.Markdown


def build(ctx: WebUIContext, picker: gr.Dropdown) -> QualityPanel:
    """The panel's widgets and its own timer (built inside the Train tab)."""
    with gr.Accordion("Quality: scores and samples", open=True, elem_id="quality-panel"):
        gr.Markdown(HELP)
        summary = gr.Markdown(elem_id="quality-summary")
        with gr.Row(elem_id="quality-plots"):
            plots = [gr.LinePlot(None, x=PLOT_COLUMNS[0], y=PLOT_COLUMNS[1], color=PLOT_COLUMNS[2], label=label,
                                 x_title="update", y_title=title, color_title="", color_map=SERIES_COLORS,
                                 elem_id=f"quality-plot-{key}") for key, title, label in METRICS]
        with gr.Row():
            step = gr.Dropdown([], value=None, label="Hear the samples of step", elem_id="sample-step")
            compare = gr.Dropdown([], value=None, label="... beside the samples of step (optional)",
                                  elem_id="sample-compare")
        player = gr.HTML(player_html(History(), None, None, lambda p: None), elem_id="sample-player-box")
        shown = gr.State(("", -1))  # (run folder drawn, evaluations drawn)
        timer = gr.Timer(POLL_S)
    private = {"api_visibility": "private"}
    timer.tick(partial(poll_quality, ctx), [shown, picker, step, compare],
               [*plots, step, compare, summary, player, shown], show_progress="hidden", **private)
    for choice in (step, compare):
        choice.input(partial(show_samples, ctx), [shown, step, compare], player, show_progress="hidden", **private)
    return QualityPanel(plots, step, compare, player, summary)


def shown_run(ctx: WebUIContext, choice: str | None) -> Path | None:
    """The run the panel shows: the running job's; else the picked checkpoint's run folder (one training wrote
    progress into); else the last job's."""
    status = ctx.jobs.status()
    job_run = Path(status["run_dir"]) if status["run_dir"] else None
    if job_run is not None and status["running"]:
        return job_run
    if choice and choice.strip():
        try:
            folder = ctx.policy.check(choice, "Checkpoint").parent
        except ANTICIPATED:
            folder = None
        if folder is not None and is_run_folder(folder):
            return folder
    return job_run


def _url(ctx: WebUIContext):
    roots = ctx.config.work_folders()
    return lambda path: file_url(path, roots)


def _pick(choices: list[tuple[str, str]], current: str | None, default: str | None) -> str | None:
    values = [v for _, v in choices]
    return current if current in values else default


def poll_quality(ctx: WebUIContext, shown: tuple | None, choice: str | None, step: str | None,
                 compare: str | None):
    """(3 plots, step, compare, summary, player, shown): redrawn when the run shown or its evaluations change;
    the step picker keeps its choice while it still exists, else takes the newest evaluation."""
    run_dir = shown_run(ctx, choice)
    history = ctx.histories.read(run_dir) if run_dir is not None else History()
    key = (str(run_dir or ""), len(history.quality), history.quality[-1].step if history.quality else None)
    last = tuple(shown) if shown and len(shown) == 3 else None
    if key == last:
        return (*(gr.skip() for _ in METRICS), gr.skip(), gr.skip(), gr.skip(), gr.skip(), key)
    choices = step_choices(history)
    step = _pick(choices, step, choices[0][1] if choices else None)
    compare = _pick(choices, compare, None)
    frames = [quality_frame(history, metric) for metric, _, _ in METRICS]
    return (*frames, gr.update(choices=choices, value=step), gr.update(choices=[("(none)", ""), *choices],
                                                                      value=compare or ""),
            summary_text(run_dir, history), player_html(history, step, compare, _url(ctx)), key)


def show_samples(ctx: WebUIContext, shown: tuple | None, step: str | None, compare: str | None) -> str:
    """The player for the steps picked, from the run the panel shows."""
    run_dir = shown[0] if shown and shown[0] else None
    history = ctx.histories.read(run_dir) if run_dir else History()
    return player_html(history, step, compare, _url(ctx))


"""The Train tab's logic, without widgets: what a start will do, and how a job's status reads on the page."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from utils.base_model.folder import missing_files
from utils.options import TrainOptions
from utils.training.plan import BaseToDownload, start_line
from utils.webui.context import WebUIContext
from utils.webui.restarts import ended_text

PLOT_COLUMNS = ("update", "loss", "kind")


def start_source(choice: str | None, path_box: str | None) -> str:
    """The checkpoint a start uses: the typed path wins over the picked one; '' means the base model."""
    return (path_box or "").strip() or (choice or "").strip()


def describe_start(ctx: WebUIContext, source: str, restart: bool, vocab: str | None, base_dir: str | None) -> str:
    """One line saying what starting will do ('Resume checkpoint_17000.pth: step 17000, epoch 29 ...'): the plan
    training itself makes (utils.training.plan), for the picked file, vocabulary and base folder."""
    folder = ctx.policy.check(base_dir or ctx.config.base_dir, "Base model folder")
    if not source and missing_files(folder):
        return BaseToDownload(folder).describe()
    opts = TrainOptions(custom_model=str(ctx.policy.check(source, "Checkpoint")) if source else None,
                        restart=bool(restart) and bool(source), base_model_dir=str(folder),
                        vocab=str(ctx.policy.check(vocab, "Vocabulary")) if vocab and vocab.strip() else None)
    return start_line(opts)


def option_values(names: list[str], values: tuple[Any, ...], source: str, restart: bool, base_local: bool,
                  base_dir: str | None) -> dict[str, Any]:
    """The CLI options as a dict from the widgets' values (blank optional boxes mean 'not given')."""
    out = dict(zip(names, values, strict=True))
    out["custom_model"] = source or None
    out["restart"] = bool(restart) and bool(source)
    out["base_model_dir"] = ((base_dir or "").strip() or None) if base_local else None
    return out


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def progress_html(status: dict[str, Any]) -> str:
    """A progress bar with update/total and ETA, losses, the job's message; data-* attributes for scripts."""
    state, step, total = status["state"], status["step"] or 0, status["total"]
    attrs = (f'data-state="{state}" data-step="{step}" data-total="{total or ""}" '
             f'data-start-step="{"" if status["start_step"] is None else status["start_step"]}"')
    bar = (f'<progress value="{step}" max="{total}" style="width:100%"></progress>' if total
           else '<progress style="width:100%"></progress>' if status["running"] else "")
    lines = [f"<b>{html.escape(state.capitalize())}</b>"]
    if status["mode"] is not None:
        lines.append(f"update {step} / {total or '?'}" + (f" · epoch {status['epoch']}" if status["epoch"] is not None
                                                          else ""))
        lines.append(f"loss {_num(status['loss'])} (avg {_num(status['avg_loss'])}) · eval {_num(status['eval_loss'])}"
                     f" · lr {_num(status['lr'], 'g')}")
        if status["running"]:
            lines.append(f"ETA {_clock(status['eta_s'])}")
    text = " · ".join(lines)
    details = [html.escape(status["message"] or "")]
    if status["checkpoint"]:
        details.append(f"Newest checkpoint: <code>{html.escape(status['checkpoint'])}</code>")
    details += [f"⚠️ {html.escape(w)}" for w in status["warnings"][-3:]]
    body = "<br>".join(d for d in details if d)
    attrs += f' data-restarts="{status.get("restarts", 0)}"'
    return f'<div id="train-progress" {attrs}>{bar}<div>{text}</div><div>{body}</div>{crash_html(status)}</div>'


def crash_html(status: dict[str, Any]) -> str:
    """The restart count and the last crash's final log lines, once the job was restarted after a crash."""
    crashes = status.get("crashes") or []
    if not crashes:
        return ""
    last = crashes[-1]
    source = Path(last["resumed_from"]).name if last["resumed_from"] else "the job's own start (no checkpoint yet)"
    summary = (f"Restarted {len(crashes)} of {status.get('max_restarts', len(crashes))} times after a crash; the "
               f"last ended with {ended_text(last['returncode'])} at update {last['step']} and continued from "
               f"{source}. Its last log lines:")
    return (f'<details class="crash-log" open><summary>{html.escape(summary)}</summary>'
            f'<pre>{html.escape(last["log_tail"])}</pre></details>')


def loss_frame(train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> pd.DataFrame | None:
    """Train and eval losses in one long table for the line plot; None (an empty plot) before the first event.

    Gradio's LinePlot keeps the colour categories of the first table it draws (and draws no lines at all after
    an empty one), so both kinds are always present, train first: a kind without points yet gets one NaN point,
    which draws nothing."""
    rows = [(s, v, "train") for s, v in train] + [(s, v, "eval") for s, v in evals]
    if not rows:
        return None
    first = min(r[0] for r in rows)
    if not train:
        rows.insert(0, (first, math.nan, "train"))
    if not evals:
        rows.append((first, math.nan, "eval"))
    return pd.DataFrame(rows, columns=list(PLOT_COLUMNS)).astype({"update": int, "loss": float, "kind": str})


def run_losses(ctx: WebUIContext, status: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The loss plot's (train, eval) points: the whole run's, across stops and resumes and from the run it was
    resumed from (utils/webui/run_history.py), once the job has named its run folder; before that, the job's."""
    if status["run_dir"]:
        return ctx.histories.read(status["run_dir"]).losses()
    return ctx.jobs.history()

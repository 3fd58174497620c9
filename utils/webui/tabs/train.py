"""The Train tab: options built from TrainOptions, the start/resume picker, progress, loss plot, log and Stop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from utils.options import WEBUI_QUALITY_EVERY, TrainOptions, check_value, coerce, field_kind, fields_of, range_text
from utils.training.memory_estimate import estimate_line
from utils.webui.context import ANTICIPATED, BASE_CHOICE, WebUIContext, checkpoint_choices, error_text, preselect
from utils.webui.restarts import DEFAULT_RESTARTS, MAX_RESTARTS, check_restarts
from utils.webui.tabs import quality_panel
from utils.webui.tabs.train_view import (
    describe_start,
    loss_frame,
    option_values,
    progress_html,
    run_losses,
    start_source,
)
from utils.xtts import EVAL_CSV, MODEL_FILE, TRAIN_CSV

PICKER_FIELDS = ("custom_model", "restart", "base_model_dir")  # set by the picker and the base-model choice
PATH_FIELDS = ("train_csv", "eval_csv", "output_path", "vocab")
MAIN_FIELDS = ("language", "num_epochs", "grad_accum", "lr", "save_step", "max_audio_length")
MEMORY_FIELDS = ("batch_size", "precision", "gradient_checkpointing", "optimizer")  # the Memory group
BASE_LOCAL, BASE_DOWNLOAD = "Local folder", "Download XTTS-v2 if missing"


@dataclass
class TrainTab:
    """The Train tab's widgets other tabs or tests refer to."""

    picker: gr.Dropdown
    options: dict[str, gr.components.Component]
    start: gr.Button
    stop: gr.Button
    progress: gr.HTML


def option_names() -> list[str]:
    """The TrainOptions fields the tab shows as widgets, in the order the start handler receives them."""
    return [f.name for f in dataclasses.fields(TrainOptions) if f.metadata["ui"] and f.name not in PICKER_FIELDS]


def option_defaults(ctx: WebUIContext) -> dict[str, Any]:
    defaults = {**dataclasses.asdict(TrainOptions()), **dict(ctx.config.train_defaults)}  # webui.py's flags
    dataset = ctx.config.dataset_dir
    defaults.update(train_csv=str(dataset / TRAIN_CSV), eval_csv=str(dataset / EVAL_CSV),
                    output_path=str(ctx.config.output), language=ctx.dataset_language(),
                    quality_every=WEBUI_QUALITY_EVERY)  # the form listens to the voice unless told not to
    return defaults


def option_widget(f: dataclasses.Field, value: Any) -> gr.components.Component:
    """The widget of one option: its help and allowed values as info; a number's range as its bounds."""
    kind = field_kind(f)
    allowed = range_text(f)
    info = f.metadata["help"] + (f" ({allowed})" if allowed else "")
    common = {"label": f.name, "info": info, "elem_id": f"opt-{f.name}"}
    if f.metadata.get("words"):  # a number or a word such as 'auto'
        return gr.Textbox(value=str(value), **common)
    if kind is str and f.metadata.get("choices"):
        return gr.Dropdown(choices=list(f.metadata["choices"]), value=value, **common)
    if kind is bool:
        return gr.Checkbox(value=bool(value), **common)
    if kind in (int, float):
        return gr.Number(value=value, precision=0 if kind is int else None, minimum=f.metadata["low"],
                         maximum=f.metadata["high"], **common)
    return gr.Textbox(value=value or "", **common)


def build(ctx: WebUIContext) -> TrainTab:
    names = option_names()
    fields = fields_of(TrainOptions)
    defaults = option_defaults(ctx)
    base_complete = (ctx.config.base_dir / MODEL_FILE).is_file()
    with gr.Tab("Train", id="train"):
        gr.Markdown("Train XTTS-v2's GPT on the dataset. Training runs as `python utils/gpt_train.py` beside this "
                    "page: closing the browser does not stop it, and opening the page again shows it.")
        with gr.Row():
            base_source = gr.Radio([BASE_LOCAL, BASE_DOWNLOAD], value=BASE_LOCAL if base_complete else BASE_DOWNLOAD,
                                   label="Base model", elem_id="base-source")
            base_dir = gr.Textbox(str(ctx.config.base_dir), label="Base model folder", scale=3, elem_id="base-dir",
                                  info="model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth; the download "
                                       "goes here too")
        with gr.Row(equal_height=False):  # a small button beside the picker, not a block as tall as it
            picker = gr.Dropdown([BASE_CHOICE], value="", label="Start from / Resume from checkpoint", scale=5,
                                 elem_id="checkpoint-picker", info="every checkpoint under the output folder: "
                                 "step, epoch, eval loss, date, size, and what choosing it does")
            refresh = gr.Button("Refresh list", size="sm", scale=0, min_width=120, elem_id="refresh-checkpoints")
        with gr.Group(), gr.Row(equal_height=True):
            path_box = gr.Textbox(label="Or a checkpoint elsewhere (path)", scale=3, elem_id="checkpoint-path")
            restart = gr.Checkbox(label="Start over from these weights (fresh optimizer, step 0)",
                                  elem_id="restart")
        plan = gr.Markdown(elem_id="start-plan")
        widgets: dict[str, Any] = {}
        with gr.Row():
            for name in PATH_FIELDS:
                widgets[name] = option_widget(fields[name], defaults[name])
        with gr.Row():
            for name in MAIN_FIELDS:
                widgets[name] = option_widget(fields[name], defaults[name])
        estimate = memory_group(fields, defaults, widgets)
        with gr.Accordion("More options", open=False), gr.Row():
            for name in names:
                if name not in widgets:
                    widgets[name] = option_widget(fields[name], defaults[name])
        with gr.Row():
            restarts = gr.Number(DEFAULT_RESTARTS, precision=0, minimum=0, maximum=MAX_RESTARTS, scale=0,
                                 min_width=200, label="Restart after a crash (up to N times)", elem_id="restarts",
                                 info="from the run's newest checkpoint; not after Stop or a divergence stop")
            start = gr.Button("Start training", variant="primary", elem_id="start-training")
            stop = gr.Button("Stop (save a checkpoint first)", variant="stop", interactive=False,
                             elem_id="stop-training")
            force = gr.Button("Force stop (SIGKILL)", variant="stop", visible=False, elem_id="force-stop")
        notice = gr.Markdown(elem_id="train-notice")
        progress = gr.HTML(elem_id="train-progress-box")
        plot = gr.LinePlot(None, x="update", y="loss", color="kind", label="Loss", elem_id="loss-plot")
        quality_panel.build(ctx, picker)
        log = gr.Textbox(label="Log (tail)", lines=12, max_lines=12, interactive=False, autoscroll=True)
        seen = gr.State(("", -1, None))
        timer = gr.Timer(1.0)

    option_inputs = [widgets[n] for n in names]
    picker_inputs = [widgets["output_path"], widgets["vocab"], base_dir]
    plan_inputs = [picker, path_box, restart, widgets["vocab"], base_dir]
    private = {"api_visibility": "private"}
    refresh.click(partial(refresh_picker, ctx), picker_inputs, [picker, plan], **private)
    for event in (picker.input, restart.change, path_box.submit, path_box.blur, widgets["vocab"].blur):
        event(partial(show_plan, ctx), plan_inputs, plan, **private)
    buttons = [notice, progress, start, stop]
    start.click(partial(start_job, ctx, names), [picker, path_box, restart, base_source, base_dir, restarts,
                                                 *option_inputs],
                buttons, concurrency_limit=None, **private)
    stop.click(partial(stop_job, ctx), None, buttons, concurrency_limit=None, **private)
    force.click(partial(force_stop_job, ctx), None, buttons, concurrency_limit=None, **private)
    estimate_inputs = [widgets[n] for n in (*MEMORY_FIELDS, "max_audio_length")]
    for name in (*MEMORY_FIELDS, "max_audio_length"):
        widgets[name].change(show_memory_estimate, estimate_inputs, estimate, **private)
    poll_outputs = [progress, plot, log, start, stop, picker, plan, seen, force]
    poll = partial(poll_job, ctx)
    timer.tick(poll, [seen, *picker_inputs], poll_outputs, show_progress="hidden", **private)
    return TrainTab(picker, widgets, start, stop, progress)


def memory_group(fields: dict[str, Any], defaults: dict[str, Any], widgets: dict[str, Any]) -> gr.Markdown:
    """The Memory group: batch size, precision, gradient checkpointing, optimizer, and the GPU memory they need."""
    with gr.Group():
        gr.Markdown("**Memory** (GPU): what the choice below needs, estimated before you start")
        with gr.Row():
            for name in MEMORY_FIELDS:
                widgets[name] = option_widget(fields[name], defaults[name])
        return gr.Markdown(show_memory_estimate(*(defaults[n] for n in (*MEMORY_FIELDS, "max_audio_length"))),
                           elem_id="memory-estimate")


# --- handlers: each returns one value per output on every path ---------------------------------------------
def show_memory_estimate(batch_size: Any, precision: str | None, checkpointing: bool | None, optimizer: str | None,
                         clip_seconds: Any) -> str:
    """The estimate line for the Memory group's values, or why they cannot be estimated."""
    fields = fields_of(TrainOptions)
    try:
        batch = coerce(fields["batch_size"], batch_size)
        check_value(fields["batch_size"], batch)
        seconds = float(clip_seconds or TrainOptions.max_audio_length)
    except ValueError as e:
        return str(e)
    return estimate_line(batch, seconds, precision or "fp32", bool(checkpointing), optimizer or "adamw")


def refresh_picker(ctx: WebUIContext, output_path: str | None, vocab: str | None, base_dir: str | None):
    """(picker, plan): every checkpoint under the output folder, the newest training checkpoint selected."""
    try:
        folder = ctx.policy.check(output_path or ctx.config.output, "Output folder")
        vocab_path = ctx.policy.check(vocab, "Vocabulary") if vocab and vocab.strip() else ctx.base_vocab(base_dir)
        choices, infos = checkpoint_choices(folder, vocab_path)
        value = preselect(infos)
        return gr.update(choices=[BASE_CHOICE, *choices], value=value), show_plan(ctx, value, "", False, vocab,
                                                                                   base_dir)
    except ANTICIPATED as e:
        return gr.update(choices=[BASE_CHOICE], value=""), error_text(e)


def show_plan(ctx: WebUIContext, choice: str | None, path_box: str | None, restart: bool | None, vocab: str | None,
              base_dir: str | None) -> str:
    try:
        return "**Start:** " + describe_start(ctx, start_source(choice, path_box), bool(restart), vocab, base_dir)
    except ANTICIPATED as e:
        return error_text(e)


def _button_updates(status: dict[str, Any]) -> tuple[Any, Any]:
    return gr.update(interactive=not status["running"]), gr.update(interactive=status["running"])


def start_job(ctx: WebUIContext, names: list[str], choice, path_box, restart, base_source, base_dir, restarts,
              *values):
    """(notice, progress, start, stop): start the CLI with the tab's options (restarted after a crash up to
    `restarts` times), or say why not."""
    try:
        source = start_source(choice, path_box)
        plan = describe_start(ctx, source, bool(restart), values[names.index("vocab")], base_dir)
        raw = option_values(names, values, source, bool(restart), base_source != BASE_DOWNLOAD, base_dir)
        status = ctx.jobs.start(ctx.policy.check_options(raw), restarts=check_restarts(restarts))
        notice = f"Started (pid {status['pid']}). {plan}" if status["accepted"] else error_text(status["error"])
    except ANTICIPATED as e:
        status, notice = ctx.jobs.status(), error_text(e)
    return notice, progress_html(status), *_button_updates(status)


def stop_job(ctx: WebUIContext):
    """(notice, progress, start, stop): SIGTERM to the job; it saves a checkpoint and exits."""
    status = ctx.jobs.stop()
    notice = "Stop requested: the trainer saves a checkpoint, then exits." if status["accepted"] \
        else error_text(status["error"])
    return notice, progress_html(status), *_button_updates(status)


def force_stop_job(ctx: WebUIContext):
    """(notice, progress, start, stop): SIGKILL the trainer's process group after Stop got no answer."""
    status = ctx.jobs.force_stop()
    notice = status["message"] if status["accepted"] else error_text(status["error"])
    return notice, progress_html(status), *_button_updates(status)


def poll_job(ctx: WebUIContext, seen: tuple | None, output_path: str | None, vocab: str | None,
             base_dir: str | None):
    """(progress, plot, log, start, stop, picker, plan, seen, force stop): the job as it is now. The plot is
    redrawn only when new events came; the picker is refreshed when the page opens, when the job saves a
    checkpoint and when it ends, with the newest checkpoint preselected; Force stop shows once Stop got no answer
    for the grace period."""
    status = ctx.jobs.status()
    last_state, last_events, last_checkpoint = seen if seen and len(seen) == 3 else ("", -1, None)
    plot = gr.skip()
    if status["events"] != last_events:
        plot = loss_frame(*run_losses(ctx, status))
    picker, plan = gr.skip(), gr.skip()
    ended = last_state in ("starting", "running", "stopping") and not status["running"]
    if not last_state or ended or status["checkpoint"] != last_checkpoint:
        picker, plan = refresh_picker(ctx, output_path, vocab, base_dir)
    return (progress_html(status), plot, ctx.jobs.log_tail(), *_button_updates(status), picker, plan,
            (status["state"], status["events"], status["checkpoint"]), gr.update(visible=status["force_stop"]))

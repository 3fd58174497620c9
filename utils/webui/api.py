"""The WebUI's named API endpoints, for `gradio_client`.

    /list_checkpoints   folder (str)           -> list of checkpoint dicts (path, step, epoch, mode, ...); a file
                                                  that cannot be used is a row {path, error, mode: null, ...}
    /start_training     options (dict)         -> job status (accepted, error, state, step, total, ...); besides
                                                  the CLI's options, `restarts`: restart after a crash up to N
                                                  times (default 3; 0: never)
    /training_status    -                      -> job status
    /stop_training      -                      -> job status (SIGTERM: the trainer saves, then exits 0)

Each returns JSON on every path; a refusal is a dict with an `error` sentence (for /list_checkpoints,
`{"error": ...}` instead of the list).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from utils.options import LATEST
from utils.webui.context import ANTICIPATED, WebUIContext
from utils.webui.restarts import check_restarts
from utils.xtts import EVAL_CSV, MODEL_FILE, TRAIN_CSV


def register(ctx: WebUIContext) -> None:
    """Add the four endpoints to the Blocks being built."""

    def list_checkpoints(folder: str) -> list[dict[str, Any]] | dict[str, Any]:
        """Every complete checkpoint under a folder, newest first.

        Args:
            folder: a folder to search recursively (usually the output folder)
        """
        return api_list_checkpoints(ctx, folder)

    def start_training(options: dict[str, Any]) -> dict[str, Any]:
        """Start `python utils/gpt_train.py` with these options unless a job is running.

        Args:
            options: the CLI's options by name (train_csv, eval_csv, output_path, custom_model, max_steps, ...),
                and `restarts`: how many times to restart after a crash (default 3)
        """
        return api_start_training(ctx, options)

    def training_status() -> dict[str, Any]:
        """The job's state, step, total, last losses and newest checkpoint."""
        return ctx.jobs.status()

    def stop_training() -> dict[str, Any]:
        """Ask the running job to save a checkpoint and stop."""
        return ctx.jobs.stop()

    for fn in (list_checkpoints, start_training, training_status, stop_training):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)


def api_list_checkpoints(ctx: WebUIContext, folder: str | None) -> list[dict[str, Any]] | dict[str, Any]:
    from utils.checkpoints.classify import list_checkpoints

    try:
        if not folder or not str(folder).strip():
            raise ValueError("No folder given: pass the folder to search (usually the output folder).")
        path = ctx.policy.check(folder, "Folder")
        if not path.is_dir():
            raise ValueError(f"Folder {folder} does not exist or is not a folder.")
        return [{**info.to_dict(), "describe": info.describe()}
                for info in list_checkpoints(path, ctx.base_vocab(), include_unusable=True)]
    except ANTICIPATED as e:
        return {"error": str(e)}


def api_start_training(ctx: WebUIContext, options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults for what the dict leaves out: the output folder and its dataset's CSVs and language."""
    try:
        if not isinstance(options, dict):
            raise ValueError("options must be a JSON object of the CLI's options, e.g. {\"num_epochs\": 10}.")
        options = dict(options)
        restarts = check_restarts(options.pop("restarts", None))  # a job setting, not a training option
        values = {"output_path": str(ctx.config.output), "language": ctx.dataset_language(),
                  "train_csv": str(ctx.config.dataset_dir / TRAIN_CSV),
                  "eval_csv": str(ctx.config.dataset_dir / EVAL_CSV), **options}
        if "base_model_dir" not in options and (ctx.config.base_dir / MODEL_FILE).is_file():
            values["base_model_dir"] = str(ctx.config.base_dir)
        latest = values.get("custom_model") == LATEST  # not a path: the newest checkpoint under output_path
        opts = ctx.policy.check_options({**values, "custom_model": None} if latest else values)
        if latest:
            opts.custom_model = LATEST
        return ctx.jobs.start(opts, restarts=restarts)
    except ANTICIPATED as e:
        return {**ctx.jobs.status(), "accepted": False, "error": str(e)}

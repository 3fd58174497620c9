"""XTTS fine-tuning WebUI: data -> vocabulary -> train (with the resume picker) -> test -> export.

Wiring only: each tab lives in utils/webui/tabs/<tab>.py and calls the same functions as the command line;
training runs as a `python utils/gpt_train.py` subprocess (utils/webui/jobs.py).

    python webui.py [--port N] [--host H] [--share] [--output_path DIR] [--base_model_dir DIR]
                    [--auth USER:PASSWORD]... [--auth_file FILE] [--restrict_paths] [--max_file_size SIZE]
                    [--num_epochs N] [--batch_size N] [--grad_accum N] [--max_audio_length S]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from utils.errors import UserInputError
from utils.options import TrainOptions, add_arguments, check_value, fields_of
from utils.webui.paths import (
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_PORT,
    ROOT,
    WebUIConfig,
    check_file_size,
    parse_auth,
    prepare_upload_dir,
)

if TYPE_CHECKING:
    from utils.webui.jobs import TrainingJobs

TITLE = "XTTS fine-tuning"
TRAIN_TAB_FLAGS = ("num_epochs", "batch_size", "grad_accum", "max_audio_length")  # as the popular WebUI has them
# Local fonts only: the default theme would fetch Google Fonts, which fails offline.
FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


def build_parser() -> argparse.ArgumentParser:
    from utils.base_model.folder import default_base_dir

    parser = argparse.ArgumentParser(prog="python webui.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0: the first free one from 7860)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves the "
                             "network, and then paths are limited to the work folders)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (needs internet)")
    parser.add_argument("--output_path", "--out_path", dest="output_path", default=str(ROOT / "output"),
                        help="work folder: dataset/, run/training/, ready/ (default ./output)")
    parser.add_argument("--base_model_dir", default=str(default_base_dir()),
                        help="XTTS-v2 base model folder (default $XTTS_BASE_DIR or the cache folder)")
    parser.add_argument("--auth", action="append", metavar="USER:PASSWORD",
                        help="require this sign-in (repeatable); API clients sign in the same way")
    parser.add_argument("--auth_file", metavar="FILE", help="sign-ins from a file, one user:password a line")
    parser.add_argument("--restrict_paths", action="store_true",
                        help="limit paths to the work folders on a loopback server too (behind a reverse proxy "
                             "or tunnel); always on with --share or a non-loopback --host")
    parser.add_argument("--max_file_size", default=DEFAULT_MAX_FILE_SIZE, metavar="SIZE",
                        help=f"largest upload, e.g. 500mb, 2gb (default {DEFAULT_MAX_FILE_SIZE})")
    add_arguments(parser.add_argument_group("the Train tab's starting values (the popular XTTS fine-tuning WebUI's "
                                            "flags, --grad_acumm too)"), TrainOptions, only=TRAIN_TAB_FLAGS)
    return parser


def config_from_args(args: argparse.Namespace) -> WebUIConfig:
    """The WebUIConfig a command line asks for; ValueError naming a bad --auth entry, --max_file_size or training
    value (--grad_accum 0)."""
    fields = fields_of(TrainOptions)
    for name in TRAIN_TAB_FLAGS:
        check_value(fields[name], getattr(args, name))
    return WebUIConfig(output=Path(args.output_path).expanduser().resolve(),
                       base_dir=Path(args.base_model_dir).expanduser().resolve(), host=args.host,
                       port=args.port or None, share=args.share, restrict_paths=args.restrict_paths,
                       auth=tuple(parse_auth(args.auth, args.auth_file)),
                       max_file_size=check_file_size(args.max_file_size),
                       train_defaults=tuple((name, getattr(args, name)) for name in TRAIN_TAB_FLAGS))


def warnings_for(config: WebUIConfig) -> list[str]:
    """What the console says before serving: who can reach the page, and what protects it."""
    out = []
    if config.beyond_this_machine:
        where = "a share link" if config.share else config.host
        out.append(f"Warning: serving beyond this machine ({where}): paths are limited to the work folders "
                   f"{[str(p) for p in config.work_folders()]}.")
        if not config.auth:
            out.append("Warning: no sign-in (--auth or --auth_file): anyone who can reach the page can train, "
                       "upload, and read the files in the work folders.")
    return out


def build_app(ctx):
    """The Blocks app for a WebUIContext (utils/webui/context.py); nothing is served until launch."""
    import gradio as gr

    from utils.webui.api import register as register_api
    from utils.webui.tabs.data import build as build_data
    from utils.webui.tabs.export import build as build_export
    from utils.webui.tabs.test import build as build_test
    from utils.webui.tabs.train import build as build_train
    from utils.webui.tabs.vocab import build as build_vocab

    config = ctx.config
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\nWork folder: `{config.output}` · base model: `{config.base_dir}`"
                    + (" · **shared: only paths inside the work folders are accepted**" if config.restricted else ""))
        with gr.Tabs():
            build_data(ctx)
            vocab_tab = build_vocab(ctx)
            train_tab = build_train(ctx)
            build_test(ctx)
            build_export(ctx)
        vocab_tab.result_path.change(lambda path: path, vocab_tab.result_path, train_tab.options["vocab"],
                                     api_visibility="private")
        register_api(ctx)
    return app


def launch(app, config: WebUIConfig, **kwargs):
    """Serve `app` (upload folder checked first); Gradio may serve files from the work folders only, asks for the
    sign-in when one is set and refuses uploads over the size cap."""
    import gradio as gr

    prepare_upload_dir()
    return app.launch(server_name=config.host, server_port=config.port, share=config.share,
                      allowed_paths=[str(p) for p in config.work_folders()], theme=gr.themes.Default(**FONTS),
                      auth=list(config.auth) or None, max_file_size=config.max_file_size,
                      ssr_mode=False, run_history=False, **kwargs)


def stop_job_on_interrupt(jobs: TrainingJobs) -> None:
    """Ctrl-C reaches the WebUI alone (the trainer leads a process group of its own): the first one asks the job
    this WebUI started to save and stop at once (so it does not train on while Gradio closes), then interrupts the
    server as Python's default handler does; a second one is Python's own again."""

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        jobs.stop_own()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    from utils.webui.context import WebUIContext

    try:
        config.output.mkdir(parents=True, exist_ok=True)
        ctx = WebUIContext.create(config)
        app = build_app(ctx)
        for line in warnings_for(config):
            print(line, file=sys.stderr)
        stop_job_on_interrupt(ctx.jobs)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before Gradio's own handling is set up
            launch(app, config)
    except (UserInputError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    ctx.jobs.shutdown()  # Ctrl-C: the job this WebUI started saves a checkpoint and stops
    return 0


"""XTTS fine-tuning WebUI: data -> vocabulary -> train (with the resume picker) -> test -> export.

Wiring only: each tab lives in utils/webui/tabs/<tab>.py and calls the same functions as the command line;
training runs as a `python utils/gpt_train.py` subprocess (utils/webui/jobs.py).

    python webui.py [--port N] [--host H] [--share] [--output_path DIR] [--base_model_dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from utils.webui.paths import DEFAULT_HOST, DEFAULT_PORT, ROOT, WebUIConfig

TITLE = "XTTS fine-tuning"
# Local fonts only: the default theme would fetch Google Fonts, which fails offline.
FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


def build_parser() -> argparse.ArgumentParser:
    from utils.base_model.folder import default_base_dir

    parser = argparse.ArgumentParser(prog="python webui.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves the "
                             "network, and then paths are limited to the work folders)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (needs internet)")
    parser.add_argument("--output_path", "--out_path", dest="output_path", default=str(ROOT / "output"),
                        help="work folder: dataset/, run/training/, ready/ (default ./output)")
    parser.add_argument("--base_model_dir", default=str(default_base_dir()),
                        help="XTTS-v2 base model folder (default $XTTS_BASE_DIR or the cache folder)")
    return parser


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
    """Serve `app`; Gradio may serve files from the work folders only."""
    import gradio as gr

    return app.launch(server_name=config.host, server_port=config.port, share=config.share,
                      allowed_paths=[str(p) for p in config.work_folders()], theme=gr.themes.Default(**FONTS),
                      ssr_mode=False, run_history=False, **kwargs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    config = WebUIConfig(output=Path(args.output_path).expanduser().resolve(),
                         base_dir=Path(args.base_model_dir).expanduser().resolve(), host=args.host, port=args.port,
                         share=args.share)
    config.output.mkdir(parents=True, exist_ok=True)
    if config.restricted:
        print(f"Warning: serving beyond this machine ({'share link' if config.share else config.host}): anyone who "
              f"can reach it can train and read files in the work folders {[str(p) for p in config.work_folders()]}; "
              "paths outside them are refused.", file=sys.stderr)
    from utils.webui.context import WebUIContext

    launch(build_app(WebUIContext.create(config)), config)
    return 0


"""The Export tab: write the `ready/` folder (model without optimizer and DVAE, config, vocab, reference clip)
and a zip of it to download."""

from __future__ import annotations

from functools import partial

import gradio as gr

from utils.webui.context import ANTICIPATED, WebUIContext, error_text, size_text
from utils.webui.tabs.test import model_picker, reference_picker
from utils.xtts import MODEL_FILE


def build(ctx: WebUIContext) -> None:
    with gr.Tab("Export", id="export"):
        gr.Markdown(f"Export a checkpoint for inference into `{ctx.config.export_dir}`: `model.pth` without "
                    "optimizer or DVAE, `config.json`, `vocab.json` and a reference clip; and a zip of it. The "
                    "export also works as a weights-only start on the Train tab.")
        models = model_picker(ctx, "Checkpoint to export", "export")
        upload, clip = reference_picker(ctx)
        export = gr.Button("Export", variant="primary")
        notice = gr.Markdown(elem_id="export-notice")
        download = gr.File(label="Download", interactive=False)
    export.click(partial(export_checkpoint, ctx), [models.choice, models.path, upload, clip], [notice, download],
                 api_visibility="private")


def export_checkpoint(ctx: WebUIContext, choice, path, upload, clip):
    """(notice, zip file): export the chosen checkpoint into <output>/ready and pack it."""
    from utils.voice.export import export_model, zip_export
    from utils.voice.inference import model_file

    try:
        source = (path or "").strip() or choice
        if not source:
            raise ValueError("No checkpoint chosen: pick one or type its path.")
        checkpoint = model_file(ctx.policy.check(source, "Checkpoint"))
        if checkpoint.resolve() == (ctx.config.export_dir / MODEL_FILE).resolve():
            raise ValueError(f"{checkpoint} is the export itself: pick the training checkpoint to export.")
        reference = ctx.policy.check(upload or clip, "Reference audio") if (upload or clip) else None
        result = export_model(checkpoint, ctx.config.export_dir, reference_wav=reference, vocab=ctx.base_vocab())
        archive = zip_export(result.folder)
    except ANTICIPATED as e:
        return error_text(e), None
    return (f"Exported `{checkpoint.name}` to `{result.folder}` ({size_text(result.size_bytes)}); zip "
            f"`{archive}` ({size_text(archive.stat().st_size)})."), str(archive)

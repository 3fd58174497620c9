"""The Data tab: recordings -> transcribed clips -> dataset, import of an existing dataset, and its check."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from utils.webui.context import ANTICIPATED, WebUIContext, error_text
from utils.webui.tabs.review import build as build_review
from utils.xtts import EVAL_CSV, TRAIN_CSV

FORMATS = ("auto", "ljspeech", "coqui")


def build(ctx: WebUIContext) -> None:
    from utils.data.options import PrepareOptions
    from utils.data.transcribe import DEVICES, whisper_model_names

    defaults = PrepareOptions()
    with gr.Tab("Data", id="data"):
        gr.Markdown(f"The dataset lives in `{ctx.config.dataset_dir}`: clips in `wavs/`, `metadata_train.csv`, "
                    "`metadata_eval.csv` and `lang.txt`. Adding recordings again skips those already done.")
        status = gr.Markdown(dataset_status(ctx), elem_id="dataset-status")
        with gr.Tab("From recordings"):
            files = gr.File(label="Recordings (wav, mp3, flac, ...)", file_count="multiple", type="filepath")
            folder = gr.Textbox(label="Or a folder of recordings on this machine", elem_id="recordings-folder")
            with gr.Row():
                language = gr.Textbox(label="Language", info="en, de, am, ...; empty: detect it",
                                      value=ctx.dataset_language(""))
                whisper = gr.Dropdown(whisper_model_names(), value=defaults.whisper_model, allow_custom_value=True,
                                      label="Whisper model", info=ctx.policy.whisper_hint())
                device = gr.Dropdown(list(DEVICES), value=defaults.device, label="Device")
            transcribe = gr.Button("Transcribe into the dataset", variant="primary")
        with gr.Tab("Import a dataset"):
            source = gr.Textbox(label="Dataset folder or CSV", info="LJSpeech (metadata.csv + wavs/) or coqui CSVs")
            with gr.Row():
                fmt = gr.Dropdown(list(FORMATS), value="auto", label="Format")
                import_language = gr.Textbox(label="Language", info="empty: the source's lang.txt")
            do_import = gr.Button("Import into the dataset", variant="primary")
        build_review(ctx)
        check = gr.Button("Check the dataset")
        report = gr.Textbox(label="Report", lines=14, interactive=False, elem_id="dataset-report")

    private = {"api_visibility": "private"}
    transcribe.click(partial(transcribe_recordings, ctx), [files, folder, language, whisper, device],
                     [report, status], **private)
    do_import.click(partial(import_existing, ctx), [source, fmt, import_language], [report, status], **private)
    check.click(partial(check_dataset, ctx), None, [report, status], **private)


def dataset_status(ctx: WebUIContext) -> str:
    from utils.data.metadata import read_metadata

    folder = ctx.config.dataset_dir
    try:
        counts = [len(read_metadata(folder / n)) for n in (TRAIN_CSV, EVAL_CSV)]
    except ValueError:
        return f"No usable dataset in `{folder}` yet."
    return f"Dataset: {counts[0]} train and {counts[1]} eval lines, language {ctx.dataset_language('?')}."


def _report_with_check(ctx: WebUIContext, summary_text: str) -> str:
    from utils.data.validate import validate_dataset

    ctx.policy.check_dataset_audio(ctx.config.dataset_dir)  # before validation reads (and reports on) any of it
    report = validate_dataset(ctx.config.dataset_dir / TRAIN_CSV, vocab_path=ctx.base_vocab())
    return f"{summary_text}\n\n{report.format()}"


def transcribe_recordings(ctx: WebUIContext, files, folder, language, whisper, device, progress=gr.Progress()):  # noqa: B008
    """(report, status): transcribe uploads and/or a folder of recordings into the dataset."""
    from utils.data.options import PrepareOptions
    from utils.data.prepare import prepare_from_audio
    from utils.data.transcribe import FasterWhisperTranscriber

    try:
        inputs = [ctx.policy.check(f, "Recording") for f in (files or [])]
        if folder and folder.strip():
            inputs.append(ctx.policy.check(folder, "Recordings folder"))
        if not inputs:
            raise ValueError("No recordings given: upload audio files or give a folder of recordings.")
        options = PrepareOptions(language=(language or "").strip() or None,
                                 whisper_model=whisper_model(ctx, whisper), device=device or "auto")
        transcriber = FasterWhisperTranscriber(options.whisper_model, device=options.device,
                                               compute_type=options.compute_type)

        def report(p) -> None:
            progress((p.files_done, p.files_total or None), desc=str(p))

        summary = prepare_from_audio(inputs, ctx.config.dataset_dir, transcriber, options, report)
        return _report_with_check(ctx, summary.format()), dataset_status(ctx)
    except ANTICIPATED as e:
        return error_text(e), dataset_status(ctx)


def whisper_model(ctx: WebUIContext, value: str | None) -> str:
    """The Whisper model box's value (blank: large-v3), checked by the path policy."""
    return ctx.policy.check_whisper_model((value or "").strip() or "large-v3")


def import_existing(ctx: WebUIContext, source, fmt, language, progress=gr.Progress()):  # noqa: B008
    """(report, status): add an LJSpeech or coqui dataset to ours."""
    from utils.data.importers import import_dataset
    from utils.data.options import ImportOptions

    try:
        if not source or not source.strip():
            raise ValueError("No dataset given: type the folder (or CSV) of the dataset to import.")
        path = ctx.policy.check(source, "Dataset")
        options = ImportOptions(language=(language or "").strip() or None)
        summary = import_dataset(path, ctx.config.dataset_dir, options,
                                 lambda p: progress((p.files_done, p.files_total or None), desc=str(p)),
                                 source_format=fmt or "auto", check_audio=ctx.policy.check)
        return _report_with_check(ctx, summary.format()), dataset_status(ctx)
    except ANTICIPATED as e:
        return error_text(e), dataset_status(ctx)


def check_dataset(ctx: WebUIContext):
    """(report, status): the validation report of the dataset (with the base vocabulary, when present)."""
    try:
        if not (Path(ctx.config.dataset_dir) / TRAIN_CSV).is_file():
            raise ValueError(f"No dataset in {ctx.config.dataset_dir} yet: transcribe recordings or import one.")
        return _report_with_check(ctx, "").strip(), dataset_status(ctx)
    except ANTICIPATED as e:
        return error_text(e), dataset_status(ctx)

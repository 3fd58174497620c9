"""The Test tab: a checkpoint or an export, a reference clip and a sentence -> speech to play and download."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from utils.webui.context import ANTICIPATED, WebUIContext, dataset_clips, error_text, model_choices


@dataclass
class ModelPicker:
    """A checkpoint/export dropdown with a path box and a refresh button (Test and Export tabs)."""

    choice: gr.Dropdown
    path: gr.Textbox
    refresh: gr.Button


def model_picker(ctx: WebUIContext, label: str, elem_prefix: str) -> ModelPicker:
    choices = model_choices(ctx.config)
    with gr.Row():
        choice = gr.Dropdown(choices, value=choices[0][1] if choices else None, label=label, scale=4,
                             elem_id=f"{elem_prefix}-model")
        refresh = gr.Button("Refresh list", size="sm", scale=1)
    path = gr.Textbox(label="Or a checkpoint / export folder elsewhere (path)", elem_id=f"{elem_prefix}-model-path")
    refresh.click(partial(refresh_models, ctx), None, choice, api_visibility="private")
    return ModelPicker(choice, path, refresh)


def reference_picker(ctx: WebUIContext) -> tuple[gr.Audio, gr.Dropdown]:
    clips = dataset_clips(ctx.config.dataset_dir, ctx.policy)
    with gr.Row():
        upload = gr.Audio(sources=["upload"], type="filepath", label="Reference audio (upload)")
        clip = gr.Dropdown(clips, value=clips[0][1] if clips else None, label="... or a dataset clip",
                           allow_custom_value=False)
    return upload, clip


def build(ctx: WebUIContext) -> None:
    with gr.Tab("Test", id="test"):
        gr.Markdown("Hear a checkpoint or an export: it speaks the text in the voice of the reference clip.")
        models = model_picker(ctx, "Checkpoint or export", "test")
        upload, clip = reference_picker(ctx)
        with gr.Row():
            text = gr.Textbox("This is my voice, trained with XTTS.", label="Text", scale=4)
            language = gr.Textbox(ctx.dataset_language(), label="Language", scale=1)
        with gr.Row(equal_height=True):
            score = gr.Checkbox(False, label="Score it: CER and transcript, speaker similarity to the reference, "
                                "MOS, duration ratio (the scoring models load on the first use)", scale=3,
                                elem_id="test-score")
            whisper = gr.Textbox(label="Whisper model for the scores (blank: the default)", scale=1,
                                 elem_id="test-whisper-model")
        speak = gr.Button("Synthesise", variant="primary")
        notice = gr.Markdown()
        audio = gr.Audio(label="Speech", type="numpy", interactive=False, buttons=["download"])
        scores = gr.Markdown(elem_id="test-scores")
    speak.click(partial(synthesise, ctx), [models.choice, models.path, upload, clip, text, language],
                [audio, notice], api_visibility="private").then(
        partial(score_speech, ctx), [audio, upload, clip, text, language, score, whisper], scores,
        api_visibility="private")


def refresh_models(ctx: WebUIContext):
    choices = model_choices(ctx.config)
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def synthesise(ctx: WebUIContext, choice, path, upload, clip, text, language):
    """(audio, notice): load the model (kept for the next sentence) and speak the text."""
    from utils.voice.inference import synthesize

    try:
        source = (path or "").strip() or choice
        if not source:
            raise ValueError("No model chosen: pick a checkpoint or an export, or type its path.")
        reference = upload or clip
        if not reference:
            raise ValueError("No reference audio: upload a clip of the speaker or pick one from the dataset.")
        model = ctx.policy.check(source, "Model")
        voice = ctx.voices.get(model, ctx.base_vocab())
        wav, rate = synthesize(voice, text or "", ctx.policy.check(reference, "Reference audio"),
                               (language or "en").strip())
        return (rate, wav), f"Spoke {len(wav) / rate:.1f} s with `{voice.source}`."
    except ANTICIPATED as e:
        return None, error_text(e)


def score_speech(ctx: WebUIContext, audio, upload, clip, text, language, wanted, whisper_model) -> str:
    """The scores of the speech just synthesised, when asked for: against its text and the reference clip it
    was spoken with (the process's one Scorer, loaded on the first request)."""
    from utils.webui.scoring import as_samples

    if not wanted or audio is None:  # off, or nothing was spoken (the notice says why)
        return ""
    try:
        samples = as_samples(audio)
        reference = upload or clip
        checked = ctx.policy.check(reference, "Reference audio") if reference else None
        model = ctx.policy.check_whisper_model(whisper_model) if whisper_model and whisper_model.strip() else ""
        scores = ctx.scorer.get(model).score(samples, text or "", checked, language=(language or "en").strip())
        return f"Scores: {scores.describe()}"
    except ANTICIPATED as e:
        return error_text(e)

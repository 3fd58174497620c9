"""The Data tab's quality review: the clips the quality gate flags, worst first, a page at a time, each with a
player, its CSV text (editable) beside what Whisper heard, and keep/drop; "drop all flagged of this kind";
Save rewrites the CSVs through `utils.data.filter.rewrite_csvs`, the function `formatter.py filter` uses.

The flagged clips live in a gr.State as a list of dicts; the page's rows are fixed widgets (`PAGE` of them),
and every handler first folds the page's edited texts and drop boxes back into that list."""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from utils.webui.context import ANTICIPATED, WebUIContext, error_text

PAGE = 8


def build(ctx: WebUIContext) -> None:
    """The "Review clips" sub-tab, built inside the Data tab."""
    from utils.data.gate import KINDS

    with gr.Tab("Review clips", id="review"):
        gr.Markdown("Listens to every clip (Whisper, DNSMOS, a speaker encoder) and lists those that would teach "
                    "the model wrong, worst first. Measurements are kept beside the CSVs and reused until a clip "
                    "changes. Flags are warnings: a clip trains unless you drop it.")
        with gr.Row():
            whisper = gr.Textbox(label="Whisper model", info="empty: the packaged tiny.en (English) when installed, "
                                 "else large-v3", elem_id="review-whisper")
            measure = gr.Button("Measure the clips", variant="primary", elem_id="review-measure")
        summary = gr.Markdown(elem_id="review-summary")
        with gr.Row():
            kind = gr.Dropdown(list(KINDS), value=KINDS[0], label="Kind of flag", elem_id="review-kind")
            drop_kind = gr.Button("Drop all flagged of this kind", elem_id="review-drop-kind")
            page = gr.Number(value=1, precision=0, minimum=1, label="Page", elem_id="review-page")
        rows: list[Any] = []
        for i in range(PAGE):
            with gr.Row(visible=False) as row:
                with gr.Column(scale=2):
                    where = gr.Markdown(elem_id=f"review-where-{i}")
                    player = gr.Audio(type="filepath", interactive=False, show_label=False,
                                      elem_id=f"review-audio-{i}")
                with gr.Column(scale=3):
                    text = gr.Textbox(label="Text (the CSV's; edit it to correct it)", elem_id=f"review-text-{i}")
                    heard = gr.Textbox(label="Whisper heard", interactive=False, elem_id=f"review-heard-{i}")
                drop = gr.Checkbox(label="Drop", elem_id=f"review-drop-{i}")
            rows.append((row, where, player, text, heard, drop))
        save = gr.Button("Save: drop the ticked clips, keep the edited texts", variant="primary",
                         elem_id="review-save")
        notice = gr.Markdown(elem_id="review-notice")
        items = gr.State([])
        shown = gr.State(1)  # the page the rows show now

    texts = [r[3] for r in rows]
    drops = [r[5] for r in rows]
    view = [items, shown, summary, notice, page] + [c for r in rows for c in r]
    private = {"api_visibility": "private"}
    measure.click(partial(measure_clips, ctx), [whisper], view, **private)
    drop_kind.click(drop_all_of_kind, [items, shown, kind, *texts, *drops], view, **private)
    page.change(turn_page, [items, shown, page, *texts, *drops], view, **private)
    save.click(partial(save_review, ctx), [items, shown, whisper, *texts, *drops], view, **private)


def _item(verdict) -> dict:
    """A flagged line as the page shows it."""
    from utils.data.filter import reasons_text
    from utils.data.metadata import resolve_audio

    row = verdict.line.row
    return {"csv": verdict.line.csv, "line": row.line, "file": row.audio_file, "speaker": row.speaker_name,
            "audio": str(resolve_audio(verdict.line.path.parent, row.audio_file)), "flags": list(verdict.flags),
            "reasons": reasons_text(verdict.flags, verdict.measurements), "text": row.text,
            "transcript": verdict.measurements.get("transcript", ""), "drop": False}


def summary_markdown(report) -> str:
    """Clips, minutes, flagged per kind, minutes left; a table per speaker when there are several."""
    s = report.summary()
    per_kind = ", ".join(f"{n} {k}" for k, n in s["flagged"].items() if n) or "none"
    text = (f"**{s['clips']} clips, {s['minutes']:.1f} min: {s['flagged_clips']} flagged** ({per_kind}); "
            f"{s['minutes_left']:.1f} min left after dropping them.")
    if len(s["speakers"]) > 1:
        text += "\n\n| speaker | clips | minutes | flagged |\n|---|---|---|---|\n" + "\n".join(
            f"| {name} | {d['clips']} | {d['minutes']:.1f} | {d['flagged']} |" for name, d in s["speakers"].items())
    return text


def _page_count(items: list[dict]) -> int:
    return max(1, -(-len(items) // PAGE))


def _fold(items: list[dict] | None, page: Any, values: tuple) -> list[dict]:
    """`items` with the texts and drop boxes of the rows (as the browser holds them, showing `page`) folded
    in."""
    items = [dict(item) for item in (items or [])]
    texts, drops = values[:PAGE], values[PAGE:]
    start = (_page_number(page, items) - 1) * PAGE
    for i, item in enumerate(items[start:start + PAGE]):
        if i < len(texts) and texts[i] is not None:
            item["text"] = texts[i]
        if i < len(drops) and drops[i] is not None:
            item["drop"] = bool(drops[i])
    return items


def _page_number(page: Any, items: list[dict]) -> int:
    try:
        number = int(page or 1)
    except (TypeError, ValueError):
        number = 1
    return min(max(1, number), _page_count(items))


def _view(items: list[dict], page: Any, summary: Any = None, notice: Any = None) -> tuple:
    """Every output: the items, the summary and notice (unchanged when None), the page, and each row."""
    number = _page_number(page, items)
    shown = items[(number - 1) * PAGE: number * PAGE]
    out: list[Any] = [items, number, gr.update() if summary is None else summary,
                      gr.update() if notice is None else notice, number]
    for i in range(PAGE):
        if i < len(shown):
            item = shown[i]
            where = (f"**{item['csv']} line {item['line']}** `{item['file']}` · speaker {item['speaker']}  \n"
                     f"{item['reasons']}")
            out += [gr.update(visible=True), where, item["audio"], item["text"], item["transcript"], item["drop"]]
        else:
            out += [gr.update(visible=False), "", None, "", "", False]
    return tuple(out)


def _assess(ctx: WebUIContext, whisper: str | None):
    from utils.data.filter import dataset_lines
    from utils.data.gate import assess
    from utils.data.metadata import read_language

    folder = ctx.config.dataset_dir
    name = ctx.policy.check_whisper_model(whisper) if whisper and whisper.strip() else None
    ctx.policy.check_dataset_audio(folder)  # before the gate reads (and transcribes) any clip outside
    return assess(dataset_lines(folder), folder, whisper_model=name, language=read_language(folder))


def measure_clips(ctx: WebUIContext, whisper: str | None, progress=gr.Progress()):  # noqa: B008
    """Measure (or read the stored measurements of) every clip; show the flagged ones, worst first."""
    try:
        report = _assess(ctx, whisper)
    except ANTICIPATED as e:
        return _view([], 1, "", error_text(e))
    items = [_item(v) for v in report.flagged]
    return _view(items, 1, summary_markdown(report), "" if items else "No clip is flagged.")


def drop_all_of_kind(items, shown, kind, *values):
    """Tick Drop on every flagged clip of `kind` (on every page); nothing is saved yet."""
    items = _fold(items, shown, values)
    count = 0
    for item in items:
        if kind in item["flags"]:
            item["drop"] = True
            count += 1
    return _view(items, shown, None, f"Ticked {count} clip(s) flagged {kind}: press Save to drop them.")


def turn_page(items, shown, page, *values):
    """Show page `page`, keeping the edits made on the page shown until now."""
    return _view(_fold(items, shown, values), page)


def save_review(ctx: WebUIContext, items, shown, whisper, *values):
    """Drop the ticked clips and write the edited texts (one change of the CSVs), then measure again (stored
    measurements: only text-dependent numbers change) and show what is still flagged."""
    from utils.data.filter import LineChange, rewrite_csvs
    from utils.data.metadata import read_metadata

    items = _fold(items, shown, values)
    try:
        current = {(c, r.line): r.text for c in {i["csv"] for i in items}
                   for r in read_metadata(ctx.config.dataset_dir / c)}
        changes = [LineChange(i["csv"], i["line"], i["file"], drop=i["drop"], reasons=i["reasons"],
                              text=None if i["drop"] or i["text"] == current.get((i["csv"], i["line"])) else i["text"])
                   for i in items if i["drop"] or i["text"] != current.get((i["csv"], i["line"]))]
        if not changes:
            return _view(items, shown, None, "Nothing to save: no clip is ticked and no text was edited.")
        result = rewrite_csvs(ctx.config.dataset_dir, changes)
        report = _assess(ctx, whisper)
    except ANTICIPATED as e:
        return _view(items, shown, None, error_text(e))
    fresh = [_item(v) for v in report.flagged]
    notice = (f"Saved: {len(result.dropped)} clip(s) dropped (in metadata_dropped.csv), {len(result.edited)} "
              f"text(s) changed" + ("; the CSVs before the first change are in metadata_backup/." if
                                    result.backup_made else "."))
    return _view(fresh, 1, summary_markdown(report), notice)

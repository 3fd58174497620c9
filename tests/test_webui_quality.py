"""The WebUI's view of a run's quality and history: the whole run's loss and quality history across stops and
resumes (run folders written by hand with the events training writes, and a real resumed training job), the
quality plots and the sample player, and the Test tab's scoring through the server."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from webui_server import HARMLESS_CLI, JOB_TIMEOUT_S, serve, upload

from tests import speech
from utils.training.events import CheckpointEvent, EvalEvent, QualityEvent, StartEvent, UpdateEvent
from utils.webui.context import WebUIContext, checkpoint_label
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig
from utils.webui.run_history import RunHistories, RunHistory, parse_line
from utils.webui.tabs.quality_panel import poll_quality, show_samples
from utils.webui.tabs.quality_view import SERIES_BASELINE, SERIES_RUN, player_html, quality_frame, step_choices


# --- run folders written by hand, with the event records training writes -------------------------------------
def start(step: int, run_dir: Path, mode: str = "base") -> dict:
    return StartEvent(step=step, total=8, epoch=0, mode=mode, run_dir=str(run_dir)).to_dict()


def update(step: int, loss: float) -> dict:
    return UpdateEvent(step=step, total=8, epoch=0, loss=loss).to_dict()


def quality(step: int, run_dir: Path, cer: float, similarity: float | None, mos: float, texts=("one", "two")) -> dict:
    """A quality event whose samples are real WAV files in samples/step_<step>/ (a tone; a different one a step)."""
    folder = run_dir / "samples" / f"step_{step}"
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    sf.write(folder / "reference.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    samples = []
    for i, text in enumerate(texts):
        path = folder / f"{i:02d}.wav"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (300 + step) * t), 16000)
        samples.append({"path": str(path), "text": text, "transcript": f"heard {text} at {step}", "cer": cer,
                        "speaker_similarity": similarity, "mos": mos, "duration_ratio": 1.1, "runaway": i == 1})
    return QualityEvent(step=step, total=8, epoch=0, cer=cer, speaker_similarity=similarity, mos=mos,
                        duration_ratio=1.1, reference=str(folder / "reference.wav"), samples=samples).to_dict()


def write_run(run_dir: Path, events: list[dict], first_start: dict | None = None) -> Path:
    """A run folder with run.json (its first start) and progress.jsonl (the events, one JSON line each)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    first = first_start or {"time": "2026-01-01T10:00:00", "mode": "base", "source": "/base/model.pth", "step": 0,
                            "options": {}}
    (run_dir / "run.json").write_text(json.dumps({"created": first["time"], "starts": [first]}))
    with open(run_dir / "progress.jsonl", "a") as f:
        for event in events:
            f.write(json.dumps({"time": 1.0, **event}) + "\n")
    return run_dir


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    """Run A: a fresh start (quality at 0 and 4), killed after update 6 with checkpoint_4 the newest, resumed at
    4 in the same folder up to 8. Run B: resumed from A's checkpoint_4 in a new folder, updates 5..7."""
    a = tmp_path / "out" / "run" / "training" / "A"
    b = tmp_path / "out" / "run" / "training" / "B"
    a.mkdir(parents=True)
    write_run(a, [start(0, a), quality(0, a, 0.9, 0.5, 1.5),
                  *(update(s, 10.0 - s) for s in range(1, 5)), EvalEvent(step=4, eval_loss=7.5).to_dict(),
                  quality(4, a, 0.6, 0.7, 2.0), CheckpointEvent(step=4, path=str(a / "checkpoint_4.pth")).to_dict(),
                  update(5, 99.0), update(6, 98.0),  # lost with the kill: trained again after the resume
                  start(4, a, "resume"), *(update(s, 20.0 - s) for s in range(5, 9)), quality(8, a, 0.3, 0.8, 2.5)])
    write_run(b, [start(4, b, "resume"), *(update(s, 30.0 - s) for s in range(5, 8))],
              {"time": "2026-01-01T11:00:00", "mode": "resume", "source": str(a / "checkpoint_4.pth"), "step": 4,
               "options": {}})
    return a, b


def test_history_drops_updates_a_resume_trained_again_and_follows_the_source_run(runs):
    a, b = runs
    history_a = RunHistory(a).read()
    assert history_a.train == [(s, 10.0 - s) for s in range(1, 5)] + [(s, 20.0 - s) for s in range(5, 9)]
    assert [q.step for q in history_a.quality] == [0, 4, 8]
    history_b = RunHistory(b).read()
    assert history_b.train == [(s, 10.0 - s) for s in range(1, 5)] + [(s, 30.0 - s) for s in range(5, 8)]
    assert history_b.evals == [(4, 7.5)]
    assert [(q.step, q.run_dir) for q in history_b.quality] == [(0, a), (4, a)]  # samples stay in A's folder


def test_history_takes_in_what_was_added_and_a_line_cut_short_by_a_crash(runs):
    _, b = runs
    histories = RunHistories()
    assert len(histories.read(b).train) == 7
    with open(b / "progress.jsonl", "ab") as f:
        f.write(json.dumps({"time": 2.0, **update(8, 22.0)}).encode()[:25])  # cut short by a power cut ...
        f.write(json.dumps({"time": 2.0, **start(6, b, "resume")}).encode() + b"\n")  # ... then a resume at 6
        f.write(json.dumps({"time": 2.0, **update(7, 21.5)}).encode() + b"\n")
        f.write(json.dumps({"time": 2.0, **update(8, 21.0)}).encode() + b"\n")
    assert histories.read(b).train[4:] == [(5, 25.0), (6, 24.0), (7, 21.5), (8, 21.0)]
    assert parse_line(b"not a record") is None


def test_a_broken_run_record_is_said_and_the_folder_still_shows(runs):
    _, b = runs
    (b / "run.json").write_text("{")
    history = RunHistory(b).read()
    assert history.train == [(s, 30.0 - s) for s in range(5, 8)]
    assert len(history.problems) == 1 and "run.json cannot be read" in history.problems[0]


def test_quality_plots_draw_each_score_with_the_step_0_baseline(runs):
    a, _ = runs
    history = RunHistory(a).read()
    frame = quality_frame(history, "cer")
    rows = [tuple(r) for r in frame.itertuples(index=False)]
    assert rows == [(0, 0.9, SERIES_RUN), (4, 0.6, SERIES_RUN), (8, 0.3, SERIES_RUN), (0, 0.9, SERIES_BASELINE),
                    (8, 0.9, SERIES_BASELINE)]
    assert list(quality_frame(history, "mos")["value"]) == [1.5, 2.0, 2.5, 1.5, 1.5]
    assert quality_frame(RunHistory(a / "nothing").read(), "cer") is None
    assert [v for _, v in step_choices(history)] == ["8", "4", "0"]


def test_a_run_without_a_step_0_evaluation_draws_both_series(runs, tmp_path):
    c = write_run(tmp_path / "C", [start(0, tmp_path / "C"), quality(2, tmp_path / "C", 0.5, None, 2.0)])
    history = RunHistory(c).read()
    similarity = quality_frame(history, "speaker_similarity")
    assert set(similarity["series"]) == {SERIES_RUN, SERIES_BASELINE}
    assert all(math.isnan(v) for v in similarity["value"])  # nothing measured: nothing drawn


def test_player_shows_a_steps_samples_beside_the_reference_or_two_steps_side_by_side(runs):
    a, _ = runs
    history = RunHistory(a).read()
    roots = [a.parent.parent.parent]
    url = lambda p: "gradio_api/file=" + str(p) if p.resolve().is_relative_to(roots[0]) else None  # noqa: E731
    one = player_html(history, "8", None, url)
    assert 'data-steps="8"' in one and one.count('data-what="sample"') == 2 and "heard two at 8" in one
    assert f"gradio_api/file={a}/samples/step_8/reference.wav" in one and "ran into the length cap" in one
    both = player_html(history, "8", "0", url)
    assert 'data-steps="8 0"' in both and both.count('data-what="sample"') == 4
    assert both.count('data-what="reference"') == 1  # the same reference clip at both steps: shown once
    assert f"{a}/samples/step_0/01.wav" in both and "heard one at 0" in both
    outside = player_html(history, "8", None, lambda p: None)
    assert "<audio" not in outside and "outside the work folders" in outside


def test_panel_shows_the_picked_checkpoints_run_and_keeps_the_step_picked(runs, tiny_base):
    a, b = runs
    out = a.parent.parent.parent
    ctx = WebUIContext.create(WebUIConfig(output=out, base_dir=tiny_base), TrainingJobs(command=HARMLESS_CLI))
    result = poll_quality(ctx, None, str(a / "checkpoint_4.pth"), None, None)
    cer, _, _, step, compare, summary, player, shown = result
    assert list(cer["update"])[:3] == [0, 4, 8] and step["value"] == "8" and compare["value"] == ""
    assert "Run `A`: 3 evaluations" in summary and 'data-steps="8"' in player
    unchanged = poll_quality(ctx, shown, str(a / "checkpoint_4.pth"), "4", "0")
    assert unchanged[-1] == shown and unchanged[3] == {"__type__": "update"}  # nothing new: nothing redrawn
    assert 'data-steps="4 0"' in show_samples(ctx, shown, "4", "0")
    b_view = poll_quality(ctx, shown, str(b / "checkpoint_7.pth"), "0", "8")
    assert [v for _, v in b_view[3]["choices"]] == ["4", "0"]  # A's evaluations up to the step B resumed from
    assert b_view[3]["value"] == "0" and b_view[4]["value"] == ""  # step 8 is not part of B's history


def test_picker_labels_show_a_checkpoints_recorded_scores():
    class Info:
        path, mode, step, epoch, eval_loss, mtime, size_bytes = "/r/run/checkpoint_8.pth", "resume", 8, 1, 2.5, 0, 9
        cer, speaker_similarity, mos = 0.123, 0.876, 3.14

    label = checkpoint_label(Info())
    assert "step 8 · epoch 1 · eval 2.500 · CER 0.12 · similarity 0.88 · MOS 3.1 ·" in label
    Info.cer = Info.speaker_similarity = Info.mos = None
    assert "CER" not in checkpoint_label(Info())


# --- a real resumed training job -------------------------------------------------------------------------------
@pytest.mark.slow
def test_loss_plot_of_a_resumed_job_includes_the_updates_before_the_resume(reference_run, tiny_base, tiny_dataset,
                                                                          tmp_path):
    """Resume the reference run's checkpoint_4 (a new run folder): the loss plot runs from update 1, the first
    four losses being the reference run's own, not from update 5."""
    from conftest import read_events, train_options

    from utils.webui.tabs.train import poll_job

    ctx = WebUIContext.create(WebUIConfig(output=tmp_path, base_dir=tiny_base), TrainingJobs())
    opts = train_options(tiny_base, tiny_dataset, tmp_path, custom_model=str(reference_run.run_dir /
                                                                            "checkpoint_4.pth"), max_steps=6)
    assert ctx.jobs.start(opts)["accepted"]
    status = ctx.jobs.wait(JOB_TIMEOUT_S)
    assert status["state"] == "finished" and status["step"] == 6, status
    plot = poll_job(ctx, None, str(tmp_path), None, str(tiny_base))[1]
    train = plot[plot["kind"] == "train"]
    expected = {e["step"]: e["loss"] for e in read_events(reference_run.run_dir) if e["step"] <= 4}
    assert list(train["update"]) == [1, 2, 3, 4, 5, 6]
    assert dict(zip(train["update"][:4], train["loss"][:4], strict=True)) == expected
    assert [s for s, _ in ctx.jobs.history()[0]] == [5, 6]  # the job itself trained 5 and 6


def test_test_tab_scoring_keeps_a_shared_servers_path_rule_for_the_whisper_folder(tiny_base, tmp_path):
    from utils.webui.tabs.test import score_speech

    ctx = WebUIContext.create(WebUIConfig(output=tmp_path, base_dir=tiny_base, host="0.0.0.0"),
                              TrainingJobs(command=HARMLESS_CLI))
    spoken = (16000, np.zeros(16000, dtype=np.int16))
    refused = score_speech(ctx, spoken, None, None, "text", "en", True, "/etc")
    assert "Whisper model '/etc' is not one of the model names" in refused and ctx.scorer.loads == 0
    assert score_speech(ctx, spoken, None, None, "text", "en", False, "/etc") == ""


# --- the Test tab's scores, through the server as the page calls it -------------------------------------------
def scores_of(line: str) -> dict[str, str]:
    found = re.fullmatch(r'Scores: cer (\S+) · transcript "(.*)" · speaker similarity (\S+) · MOS (\S+) · '
                         r"duration ratio (\S+)", line)
    assert found, line
    return dict(zip(("cer", "transcript", "speaker_similarity", "mos", "duration_ratio"), found.groups(),
                    strict=True))


@pytest.mark.slow
def test_test_tab_scores_what_it_spoke_against_its_text_and_reference(tiny_base, tmp_path):
    """Speech of known text in the Speech box and the speaker's clip as reference: low CER, what Whisper heard,
    high similarity, a MOS, a duration ratio near 1; the same speech against other text: a high CER. The
    scoring models load once, on the first request, and not at all while Score is off."""
    from webui_server import call_handler

    server = serve(WebUIConfig(output=tmp_path / "out", base_dir=tiny_base), TrainingJobs(command=HARMLESS_CLI))
    try:
        said = speech.speak(speech.SENTENCES[0], tmp_path / "said.wav")
        reference = speech.speak(speech.SENTENCES[2], tmp_path / "reference.wav")
        spoken, ref = upload(server, said), upload(server, reference)
        off = call_handler(server, "score_speech", spoken, ref, None, speech.SENTENCES[0], "en", False, "")
        assert off == [""] and server.ctx.scorer.loads == 0
        right = scores_of(call_handler(server, "score_speech", spoken, ref, None, speech.SENTENCES[0], "en", True,
                                       "")[0])
        assert float(right["cer"]) < 0.2 and "fox" in right["transcript"].lower()
        assert float(right["speaker_similarity"]) > 0.8 and 1.0 <= float(right["mos"]) <= 5.0
        assert 0.6 < float(right["duration_ratio"]) < 1.5
        wrong = scores_of(call_handler(server, "score_speech", spoken, ref, None, speech.SENTENCES[3], "en", True,
                                       "")[0])
        assert float(wrong["cer"]) > 0.5
        assert server.ctx.scorer.loads == 1
        assert call_handler(server, "score_speech", None, ref, None, "text", "en", True, "") == [""]
    finally:
        server.app.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

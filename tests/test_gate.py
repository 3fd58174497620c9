"""The dataset quality gate on real speech (espeak-ng) with the real models (packaged tiny.en, resemblyzer,
DNSMOS): each planted fault gets its flag and clean clips none; `validate --quality` and `filter` as commands;
filter then --restore gives the CSVs back byte for byte; a filter killed at any moment leaves the old or the
new set of CSVs once the next command has run.

The dataset is built and measured once per session; each test works on a copy holding the measurements."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import faulty_dataset, speech
from utils.data import csvset
from utils.data.errors import DatasetError
from utils.data.filter import LineChange, dataset_lines, filter_dataset, rewrite_csvs
from utils.data.gate import KINDS, GateThresholds, assess, stored_flags_note
from utils.data.measure import MEASUREMENTS_FILE, Measurer, audio_sha256
from utils.xtts import EVAL_CSV, TRAIN_CSV

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "utils" / "formatter.py"
SET = (TRAIN_CSV, EVAL_CSV, csvset.DROPPED_CSV)


@pytest.fixture(scope="session")
def measurer() -> Measurer:
    return Measurer().load("en")


@pytest.fixture(scope="session")
def measured(tmp_path_factory, measurer):
    """The faulty dataset, measured once (its quality_measurements.json written), and the report."""
    folder = tmp_path_factory.mktemp("gate") / "dataset"
    dataset = faulty_dataset.build(folder)
    report = assess(dataset_lines(folder), folder, language="en", measurer=measurer)
    return dataset, report


@pytest.fixture
def copy(measured, tmp_path) -> faulty_dataset.FaultyDataset:
    """A copy of the measured dataset (its clips, CSVs and measurements) to change."""
    dataset, _ = measured
    target = tmp_path / "dataset"
    shutil.copytree(dataset.folder, target)
    return faulty_dataset.FaultyDataset(target, dict(dataset.lines))


def csv_bytes(folder: Path) -> dict[str, bytes | None]:
    return {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in SET}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_each_planted_fault_gets_its_flag_and_clean_clips_none(measured):
    dataset, report = measured
    by_file = {v.line.row.audio_file: v for v in report.verdicts}
    assert len(by_file) == len(dataset.lines)
    for name, (_csv, _line, audio_file) in dataset.lines.items():
        verdict = by_file[audio_file]
        if name in faulty_dataset.FAULTS:
            assert faulty_dataset.FAULTS[name] in verdict.flags, (name, verdict.flags, verdict.measurements)
        else:
            assert verdict.flags == [], (name, verdict.measurements)
    assert report.summary()["flagged_clips"] == len(faulty_dataset.FAULTS)
    flagged = report.flagged
    assert [v.badness for v in flagged] == sorted((v.badness for v in flagged), reverse=True)


def test_validate_quality_json_lists_flagged_clips_worst_first_with_exact_keys(copy):
    done = run_cli("validate", str(copy.folder), "--quality", "--json")
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["event"] == "report", done.stderr
    clips = report["clips"]
    assert {c["file"] for c in clips} == {copy.lines[n][2] for n in faulty_dataset.FAULTS}
    for c in clips:
        assert list(c) == ["line", "file", "flags", "measurements"]
        csv_name, line, _ = next(v for v in copy.lines.values() if v[2] == c["file"])
        assert c["line"] == line and c["measurements"]["csv"] == csv_name and c["flags"]
        assert set(c["flags"]) <= set(KINDS)
    assert clips[0]["file"] == copy.lines["noise"][2]  # three flags, each far past its threshold
    summary = report["quality"]
    assert summary["clips"] == len(copy.lines) and summary["flagged_clips"] == len(faulty_dataset.FAULTS)
    assert 0 < summary["minutes_left"] < summary["minutes"]
    text = run_cli("validate", str(copy.folder), "--quality").stdout
    assert f"Quality: {len(copy.lines)} clips" in text and f"{len(faulty_dataset.FAULTS)} flagged" in text
    assert f"flagged metadata_train.csv line {copy.lines['noise'][1]} (wavs/noise.wav): transcript_mismatch, " \
           "noisy, silence;" in text


def test_measurements_are_reused_until_the_audio_changes(copy, measurer, monkeypatch):
    measured_now = []
    measure = measurer.measure
    monkeypatch.setattr(measurer, "measure", lambda data, where, *rest: measured_now.append(where.name) or measure(
        data, where, *rest))
    first = assess(dataset_lines(copy.folder), copy.folder, language="en", measurer=measurer)
    assert measured_now == []
    # a new text re-measures nothing, and is judged against the stored transcript
    _, line, audio_file = copy.lines["mismatch"]
    rewrite_csvs(copy.folder, [LineChange(TRAIN_CSV, line, audio_file, text=speech.SENTENCES[1])])
    again = assess(dataset_lines(copy.folder), copy.folder, language="en", measurer=measurer)
    assert measured_now == []
    old, new = ({v.line.row.audio_file: v for v in r.verdicts}[audio_file] for r in (first, again))
    assert "transcript_mismatch" in old.flags and new.flags == [] and new.measurements["asr_cer"] < 0.25
    # new audio under an old name is measured again
    speech.speak(faulty_dataset.OTHER_TEXT, copy.folder / copy.lines["clean1"][2])
    assess(dataset_lines(copy.folder), copy.folder, language="en", measurer=measurer)
    assert measured_now == ["clean1.wav"]


def test_thresholds_can_be_overridden(measured):
    dataset, report = measured
    loose = assess(dataset_lines(dataset.folder), dataset.folder, GateThresholds(max_speaker_distance=0.3),
                   language="en")
    speakers = {v.line.row.audio_file for v in loose.verdicts if "other_speaker" in v.flags}
    assert speakers == {dataset.lines["other_voice"][2]}
    assert len([v for v in report.verdicts if "other_speaker" in v.flags]) > 1


def test_filter_then_restore_gives_back_byte_identical_csvs(copy):
    before = csv_bytes(copy.folder)
    done = run_cli("filter", str(copy.folder), "--drop", "other_speaker", "--max_speaker_distance", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert [d["file"] for d in result["dropped"]] == [copy.lines["other_voice"][2]]
    assert result["backup_made"] is True
    after = csv_bytes(copy.folder)
    other_line = next(ln for ln in before[TRAIN_CSV].split(b"\n") if b"other_voice" in ln)
    assert after[TRAIN_CSV] == before[TRAIN_CSV].replace(other_line + b"\n", b"")  # kept lines keep their bytes
    assert after[EVAL_CSV] == before[EVAL_CSV]
    dropped = after[csvset.DROPPED_CSV].decode().splitlines()
    assert dropped[0] == "audio_file|text|speaker_name|source_csv|source_line|reasons"
    assert dropped[1].startswith(f"wavs/other_voice.wav|{speech.SENTENCES[2]}|alice|metadata_train.csv|"
                                 f"{copy.lines['other_voice'][1]}|other_speaker (speaker_distance 0.3")
    # a second filter drops more and appends; the backup stays the one from before the first
    done = run_cli("filter", str(copy.folder))
    assert done.returncode == 0, done.stderr
    assert "Dropped 5 line(s)" in done.stdout
    assert len(csv_bytes(copy.folder)[csvset.DROPPED_CSV].decode().splitlines()) == 1 + 6
    assert (copy.folder / csvset.BACKUP_DIR / TRAIN_CSV).read_bytes() == before[TRAIN_CSV]
    note = stored_flags_note([copy.folder / TRAIN_CSV, copy.folder / EVAL_CSV])
    assert note.startswith("Quality gate: 0 of 6 measured clips are flagged;"), note
    done = run_cli("filter", str(copy.folder), "--restore")
    assert done.returncode == 0, done.stderr
    assert csv_bytes(copy.folder) == before
    assert not (copy.folder / csvset.BACKUP_DIR).exists()
    again = run_cli("filter", str(copy.folder), "--restore")
    assert again.returncode == 1 and "nothing to restore" in again.stderr


def test_the_train_note_counts_flagged_clips_from_stored_measurements(copy):
    csvs = [copy.folder / TRAIN_CSV, copy.folder / EVAL_CSV]
    note = stored_flags_note(csvs)
    assert note.startswith(f"Quality gate: 6 of {len(copy.lines)} measured clips are flagged (4 transcript_mismatch, "
                           "1 noisy, 1 clipped, 2 silence, 1 speaking_rate, 3 other_speaker); flagged clips train "
                           "unless dropped"), note
    speech.speak(faulty_dataset.OTHER_TEXT, copy.folder / copy.lines["clean1"][2])
    assert "1 clip(s) added or changed since they were measured" in stored_flags_note(csvs)
    (copy.folder / MEASUREMENTS_FILE).unlink()
    assert stored_flags_note(csvs) is None


def test_edits_keep_the_other_bytes_and_bad_changes_change_nothing(copy):
    folder = copy.folder
    train = folder / TRAIN_CSV
    train.write_bytes(train.read_bytes().replace(b"\n", b"\r\n"))  # a CSV saved on Windows
    before = csv_bytes(folder)
    _, line, audio_file = copy.lines["clean0"]
    rewrite_csvs(folder, [LineChange(TRAIN_CSV, line, audio_file, text="  The quick brown fox.  ")])
    old_lines, new_lines = (b.split(b"\n") for b in (before[TRAIN_CSV], train.read_bytes()))
    assert new_lines[line - 1] == b"wavs/clean0.wav|The quick brown fox.|alice\r"
    others = [x for i, x in enumerate(old_lines) if i != line - 1]
    assert [x for i, x in enumerate(new_lines) if i != line - 1] == others
    edited = csv_bytes(folder)
    eval_changes = [LineChange(EVAL_CSV, copy.lines[n][1], copy.lines[n][2], drop=True) for n in ("clean4", "clean5")]
    with pytest.raises(DatasetError, match="without lines"):
        rewrite_csvs(folder, eval_changes)
    with pytest.raises(DatasetError, match="no longer names"):
        rewrite_csvs(folder, [LineChange(TRAIN_CSV, line, "wavs/other.wav", drop=True)])
    with pytest.raises(DatasetError, match=r"holds '\|'"):
        rewrite_csvs(folder, [LineChange(TRAIN_CSV, line, audio_file, text="a|b")])
    assert csv_bytes(folder) == edited


def test_bad_input_is_one_sentence_and_exit_1(copy, tmp_path):
    for args, expected in ((["filter", str(tmp_path / "none")], "does not exist"),
                           (["filter", str(copy.folder), "--restore"], "nothing to restore"),
                           (["validate", str(copy.folder), "--quality", "--whisper_model", str(tmp_path / "nowhere")],
                            "nowhere")):
        done = run_cli(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and expected in done.stderr, (args, done.stderr)
    done = run_cli("filter", str(copy.folder), "--drop", "loud")
    assert done.returncode == 2 and "invalid choice: 'loud'" in done.stderr


def _filtered_bytes(measured, tmp_path: Path) -> dict[str, bytes | None]:
    """The CSVs an uninterrupted `filter` makes of the measured dataset."""
    folder = tmp_path / "uninterrupted"
    shutil.copytree(measured[0].folder, folder)
    filter_dataset(folder)
    return csv_bytes(folder)


@pytest.mark.parametrize("stage", ["staged", "journal", "renaming"])
def test_a_killed_filter_leaves_the_old_or_the_new_csvs(measured, copy, tmp_path, stage):
    """Killed (SIGKILL) after staging the new files, after deciding (the journal), and between two renames:
    the next command rolls back (before the journal) or finishes (after it); never a mix."""
    old, new = csv_bytes(copy.folder), _filtered_bytes(measured, tmp_path)
    assert old != new
    marker = tmp_path / "paused"
    process = subprocess.Popen([sys.executable, str(LAUNCHER), "filter", str(copy.folder)],
                               env={**os.environ, csvset.PAUSE_ENV: f"{marker}:{stage}"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == stage, process.communicate()
    during = csv_bytes(copy.folder)
    busy = run_cli("filter", str(copy.folder))  # a second change is refused while the first one runs
    assert busy.returncode == 1 and "Another command is changing the CSVs" in busy.stderr, busy.stderr
    looked = run_cli("validate", str(copy.folder))  # and a reader's recovery leaves a running change alone
    assert "interrupted" not in looked.stderr and csv_bytes(copy.folder) == during
    assert list(copy.folder.glob("*.staged")) or stage == "renaming"
    process.send_signal(signal.SIGKILL)
    process.wait()
    if stage == "renaming":
        on_disk = csv_bytes(copy.folder)
        assert on_disk not in (old, new)  # the mix a reader would see without the journal: why recovery exists
    done = run_cli("validate", str(copy.folder))
    assert ("Finished an interrupted" if stage != "staged" else "Rolled back an interrupted") in done.stderr
    assert csv_bytes(copy.folder) == (old if stage == "staged" else new)
    assert not list(copy.folder.glob("*.staged*")) and not (copy.folder / csvset.JOURNAL).exists()
    done = run_cli("filter", str(copy.folder), "--restore")
    assert done.returncode == 0, done.stderr
    assert csv_bytes(copy.folder) == old


def test_a_late_start_is_flagged_as_silence(measured, measurer, tmp_path):
    """Leading silence alone (a clip that starts 2.5 s late) is flagged, whatever the share."""
    dataset, _ = measured
    folder = tmp_path / "late"
    shutil.copytree(dataset.folder, folder)
    spoken, rate = sf.read(folder / dataset.lines["clean2"][2], dtype="float32")
    sf.write(folder / dataset.lines["clean2"][2], np.concatenate([np.zeros(int(2.5 * rate), "float32"), spoken]), rate)
    report = assess(dataset_lines(folder), folder, language="en", measurer=measurer)
    verdict = next(v for v in report.verdicts if v.line.row.audio_file == dataset.lines["clean2"][2])
    assert verdict.flags == ["silence"], verdict.measurements
    m = verdict.measurements
    assert m["leading_silence_s"] > GateThresholds().max_edge_silence and m["silence_share"] < 0.5, m


@pytest.mark.slow
def test_training_says_how_many_clips_are_flagged_and_trains_them(copy, tiny_base, tmp_path):
    from conftest import read_events

    from utils.options import TrainOptions
    from utils.training.run import train_gpt

    opts = TrainOptions(train_csv=str(copy.folder / TRAIN_CSV), eval_csv=str(copy.folder / EVAL_CSV),
                        output_path=str(tmp_path / "out"), base_model_dir=str(tiny_base), num_epochs=1, batch_size=2,
                        max_steps=1, save_step=1000)
    result = train_gpt(opts)
    warnings = [e["message"] for e in read_events(result.run_dir, "warning")]
    assert any(m.startswith(f"Quality gate: 6 of {len(copy.lines)} measured clips are flagged (") for m in warnings), \
        warnings
    assert result.step == 1


@pytest.mark.slow
def test_review_in_a_real_browser_edits_a_text_and_drops_clips(measured, tiny_base, tmp_path):
    """The Data tab's review: measure (stored measurements), tick every noisy clip with "drop all of this kind",
    tick one more by hand, correct a text, save: the CSVs change as `filter` would change them."""
    from webui_server import serve

    from tools.screenshots import VIEWPORT, launch_browser, missing_browser, open_tab
    from utils.webui.paths import WebUIConfig
    from utils.webui.tabs.review import PAGE

    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    from playwright.sync_api import expect, sync_playwright

    dataset, _ = measured
    out = tmp_path / "out"
    shutil.copytree(dataset.folder, out / "dataset")
    folder = out / "dataset"
    server = serve(WebUIConfig(output=out, base_dir=tiny_base))
    artifacts = ROOT / "test-artifacts" / "webui"
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server.url)
            open_tab(page, "Data")
            open_tab(page, "Review clips")
            page.locator("#review-measure").click()
            expect(page.locator("#review-summary")).to_contain_text("12 clips", timeout=120_000)
            expect(page.locator("#review-summary")).to_contain_text("6 flagged")
            rows = {}
            for i in range(PAGE):
                where = page.locator(f"#review-where-{i}")
                if where.is_visible():
                    rows[where.inner_text().split("`")[1] if "`" in where.inner_text() else
                         where.inner_text().split()[3]] = i
            assert set(rows) == {dataset.lines[n][2] for n in faulty_dataset.FAULTS}, rows
            expect(page.locator(f"#review-audio-{rows['wavs/noise.wav']}")).to_be_visible()
            mismatch = rows["wavs/mismatch.wav"]
            expect(page.locator(f"#review-heard-{mismatch} textarea")).to_have_value(re.compile("sea shore"))
            page.locator(f"#review-text-{mismatch} textarea").fill(speech.SENTENCES[1])
            page.locator("#review-kind input").click()
            page.get_by_role("option", name="noisy", exact=True).click()
            page.locator("#review-drop-kind").click()
            expect(page.locator(f"#review-drop-{rows['wavs/noise.wav']} input")).to_be_checked(timeout=30_000)
            page.locator(f"#review-drop-{rows['wavs/other_voice.wav']} input").check()
            page.screenshot(path=str(artifacts / "data-review.png"), full_page=True)
            page.locator("#review-save").click()
            expect(page.locator("#review-notice")).to_contain_text("Saved: 2 clip(s) dropped", timeout=60_000)
            expect(page.locator("#review-notice")).to_contain_text("1 text(s) changed")
            expect(page.locator("#review-summary")).to_contain_text("10 clips")
            browser.close()
    finally:
        server.app.close()
    train = (folder / TRAIN_CSV).read_text()
    assert "wavs/noise.wav" not in train and "wavs/other_voice.wav" not in train
    assert f"wavs/mismatch.wav|{speech.SENTENCES[1]}|alice\n" in train
    dropped = (folder / csvset.DROPPED_CSV).read_text().splitlines()[1:]
    assert sorted(d.split("|")[0] for d in dropped) == ["wavs/noise.wav", "wavs/other_voice.wav"]
    assert (folder / csvset.BACKUP_DIR / TRAIN_CSV).read_bytes() == (dataset.folder / TRAIN_CSV).read_bytes()


def _entries(folder: Path) -> set[str]:
    return set(json.loads((folder / MEASUREMENTS_FILE).read_text(encoding="utf-8"))["clips"])


def test_a_rewritten_sidecar_keeps_only_the_clips_some_csv_names(copy, measurer, monkeypatch):
    """A clip whose line is gone from every CSV loses its entry at the next rewrite, even one that measures
    nothing; a dropped line (metadata_dropped.csv, and the backup) keeps its clip's, so --restore measures nothing."""
    folder = copy.folder

    def digest(name: str) -> str:
        return audio_sha256((folder / copy.lines[name][2]).read_bytes())

    before = _entries(folder)
    assert {digest(n) for n in copy.lines} == before
    train = folder / TRAIN_CSV  # clean0's line deleted by hand: no CSV names it (nor the backup, made after)
    train.write_bytes(b"".join(ln for ln in train.read_bytes().splitlines(keepends=True) if b"clean0.wav" not in ln))
    _, audio_file = copy.lines["other_voice"][1:]
    line = next(i for i, ln in enumerate(train.read_text().splitlines(), 1) if audio_file in ln)
    rewrite_csvs(folder, [LineChange(TRAIN_CSV, line, audio_file, drop=True)])
    measured_now = []
    measure = measurer.measure
    monkeypatch.setattr(measurer, "measure", lambda data, where, *rest: measured_now.append(where.name) or measure(
        data, where, *rest))
    assess(dataset_lines(folder), folder, language="en", measurer=measurer)
    assert measured_now == [] and _entries(folder) == before - {digest("clean0")}
    old = digest("clean2")
    speech.speak(faulty_dataset.OTHER_TEXT, folder / copy.lines["clean2"][2])
    assess(dataset_lines(folder), folder, language="en", measurer=measurer)
    assert measured_now == ["clean2.wav"]
    assert _entries(folder) == (before - {digest("clean0"), old}) | {digest("clean2")}
    assert digest("other_voice") in _entries(folder)


class _Heard:
    """A transcriber that keeps what the real one heard."""

    def __init__(self, transcriber) -> None:
        self.transcriber, self.heard = transcriber, None

    @property
    def model_name(self) -> str:
        return self.transcriber.model_name

    def transcribe(self, path, language=None, *, on_progress=None):
        self.heard = self.transcriber.transcribe(path, language, on_progress=on_progress)
        return self.heard


def test_clips_our_transcriber_cut_show_whispers_confidence_at_cutting(measured, measurer, tmp_path):
    """The real tiny.en cuts espeak speech into clips: each clip's measurements show the worst of Whisper's
    segment confidence over the segments whose words it holds, in the JSON and the text report; clips cut
    elsewhere show none."""
    from utils.data.options import PrepareOptions
    from utils.data.prepare import prepare_from_audio
    from utils.data.transcribe import Confidence, FasterWhisperTranscriber
    from utils.whisper import packaged_tiny_en

    parts = [speech.speak(text, tmp_path / f"s{i}.wav") for i, text in enumerate(speech.SENTENCES)]
    recording = speech.concatenate(parts, tmp_path / "four.wav", gap_s=0.6)
    recorder = _Heard(FasterWhisperTranscriber(packaged_tiny_en(), device="cpu", compute_type="int8"))
    folder = tmp_path / "ds"
    options = PrepareOptions(language="en", min_clip_seconds=2.0, max_clip_seconds=6.0, seed=3)
    summary = prepare_from_audio([recording], folder, recorder, options)
    assert summary.clips_added >= 3, summary.format()
    segments = recorder.heard.segments
    assert segments and all(s.confidence is not None for s in segments)
    report = assess(dataset_lines(folder), folder, GateThresholds(min_mos=5.0), language="en", measurer=measurer)
    assert len(report.flagged) == summary.clips_added  # every clip flagged noisy here, to show the text report
    text = report.format()
    for verdict, listed in zip(report.flagged, report.to_dict()["clips"], strict=True):
        start, end = _cut_span(verdict.line.row.audio_file, recorder.heard, sf.info(recording).duration, options)
        expected = Confidence.worst(s.confidence for s in segments if any(
            start <= (w.start + w.end) / 2 <= end for w in s.words))
        m = listed["measurements"]
        assert m["whisper_avg_logprob"] == pytest.approx(expected.avg_logprob, abs=1e-4)
        assert m["whisper_no_speech_prob"] == pytest.approx(expected.no_speech_prob, abs=1e-4)
        assert m["whisper_compression_ratio"] == pytest.approx(expected.compression_ratio, abs=1e-4)
        assert -1.5 < m["whisper_avg_logprob"] < 0 and 0 <= m["whisper_no_speech_prob"] < 0.5, m
        assert (f"({verdict.line.row.audio_file}): noisy; " in text and
                f"at cutting Whisper logprob {m['whisper_avg_logprob']:.2f}, no-speech "
                f"{m['whisper_no_speech_prob']:.2f}, compression {m['whisper_compression_ratio']:.2f}" in text)
    _, faulty = measured
    assert all(v.measurements["whisper_avg_logprob"] is None for v in faulty.verdicts)
    assert "at cutting" not in faulty.format()


def _cut_span(audio_file: str, heard, seconds: float, options) -> tuple[float, float]:
    """Where in the recording a clip was cut from (seconds): its plan, by the index in its file name."""
    from utils.data.clips import plan_clips

    index = int(re.fullmatch(r"wavs/.+_[0-9a-f]{8}_(\d{4})\.wav", audio_file).group(1))
    plan = plan_clips(heard, min_seconds=options.min_clip_seconds, max_seconds=options.max_clip_seconds,
                      padding_seconds=options.padding_seconds, duration=seconds).clips[index]
    return plan.start, plan.end

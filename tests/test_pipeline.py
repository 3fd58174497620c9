"""The whole path a user takes: recordings -> dataset -> training; and the offline self-check."""

from __future__ import annotations

import subprocess
import sys

import soundfile as sf
from conftest import ROOT
from test_formatter import ScriptedTranscriber, script

from utils.data.options import PrepareOptions
from utils.data.prepare import prepare_from_audio
from utils.testbed import SENTENCES, synth_clip


def test_a_dataset_prepared_from_a_recording_trains(train, tmp_path):
    recording = tmp_path / "talk.wav"
    segments, seconds = script(SENTENCES[:8])
    sf.write(recording, synth_clip(seconds, seed=7, channels=2, sample_rate=44100), 44100)
    transcriber = ScriptedTranscriber()
    transcriber.register(recording, segments, seconds)
    summary = prepare_from_audio([recording], tmp_path / "dataset", transcriber,
                                 PrepareOptions(language="en", eval_fraction=0.25))
    assert summary.train_lines >= 2 and summary.eval_lines >= 1
    result = train(tmp_path / "out", train_csv=str(summary.train_csv), eval_csv=str(summary.eval_csv), max_steps=2,
                   batch_size=1)
    assert (result.mode, result.step) == ("base", 2)


def test_selfcheck_trains_stops_resumes_and_says_it_is_a_pipeline_check():
    proc = subprocess.run([sys.executable, "utils/gpt_train.py", "--selfcheck"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "produces no usable voice" in proc.stdout
    assert "Resumed from step 2 to step 4" in proc.stdout
    assert "Self-check passed" in proc.stdout

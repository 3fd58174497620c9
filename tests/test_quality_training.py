"""Quality evaluation during training: synthesis with the training model's current weights leaves the model,
its modes and every RNG exactly as they were, and writes samples/step_N/ with scores.json."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import speech
from tests.conftest import read_events, train_options
from utils.base_model.folder import check_base_folder
from utils.quality.scorer import Scorer
from utils.training.config import build_config, build_model
from utils.training.quality_eval import (
    SCORES_FILE,
    QualityEvaluator,
    default_sentences,
    read_sentences,
    token_cap,
)


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    return Scorer().load()


@pytest.fixture(scope="session")
def reference_clip(tmp_path_factory) -> Path:
    return speech.speak(speech.SENTENCES[1], tmp_path_factory.mktemp("ref") / "ref.wav")


def training_model(tiny_base: Path, tiny_dataset, run_dir: Path):
    base = check_base_folder(tiny_base)
    opts = train_options(tiny_base, tiny_dataset, run_dir)
    model = build_model(build_config(opts, base, base.vocab_path, run_dir), base.vocab_path)
    model.train()
    model.xtts.gpt.conditioning_encoder.eval()  # a mixed state: each module's own flag must come back
    return model


def test_an_evaluation_leaves_the_training_model_and_rng_untouched(tiny_base, tiny_dataset, scorer, reference_clip,
                                                                  tmp_path):
    model = training_model(tiny_base, tiny_dataset, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)

    evaluator = QualityEvaluator(scorer, ["the river bends twice.", "a small boat"], reference_clip, "en",
                                 run_dir=tmp_path)
    report = evaluator.evaluate(model.xtts, step=3)

    after = model.state_dict()
    assert list(after) == list(before)  # no inference modules left in what checkpoints save
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])

    folder = tmp_path / "samples" / "step_3"
    saved = json.loads((folder / SCORES_FILE).read_text())
    assert saved["step"] == 3 and len(saved["samples"]) == 2
    for sample in saved["samples"]:
        assert Path(sample["path"]).is_file() and Path(sample["path"]).parent == folder
        assert sample["cer"] >= 0.0 and isinstance(sample["transcript"], str)
    assert (folder / "reference.wav").is_file()
    assert report.scores().keys() == {"cer", "speaker_similarity", "mos", "duration_ratio"}


def test_the_same_weights_give_the_same_samples(tiny_base, tiny_dataset, scorer, reference_clip, tmp_path):
    model = training_model(tiny_base, tiny_dataset, tmp_path)
    evaluator = QualityEvaluator(scorer, ["the river bends twice."], reference_clip, "en", run_dir=tmp_path)
    first = evaluator.synthesise(model.xtts)
    second = evaluator.synthesise(model.xtts)
    assert np.array_equal(first[0][1], second[0][1])


def test_generation_is_capped_at_twice_the_expected_duration():
    # 20 letters at 10 letters per second is 2 s; twice that is 4 s of 1024-sample tokens at 22050 Hz.
    assert token_cap("abcde fghij klmno pqrst", rate=10.0, code_stride=1024) == int(2 * 2.0 * 22050 / 1024) + 1


def test_default_sentences_take_eval_transcripts_a_short_phrase_and_a_long_sentence():
    texts = ["the old clock struck nine times tonight.", "we walked home under the sky.",
             "fresh bread smells wonderful today."]
    sentences = default_sentences(texts, "en")
    assert sentences[:3] == texts
    assert "we walked home" in sentences and len(sentences[-1]) > max(len(t) for t in texts)


def test_a_sentences_file_without_sentences_is_refused_in_one_sentence(tmp_path):
    empty = tmp_path / "s.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no sentence"):
        read_sentences(empty)


def test_the_reference_picked_from_training_clips_is_clean_and_of_the_main_speaker(scorer, tmp_path):
    from utils.quality.reference import pick_reference

    clean = [speech.speak(text, tmp_path / f"a{i}.wav") for i, text in enumerate(speech.SENTENCES[:3])]
    noisy = speech.with_noise(clean[0], tmp_path / "noisy.wav", snr_db=0.0)
    other = speech.speak(speech.SENTENCES[3], tmp_path / "other.wav", voice="en-us+f3", pitch=70)
    choice = pick_reference([noisy, other, *clean], scorer)
    assert choice.path in clean
    assert choice.candidates == 5 and choice.mos is not None


def test_best_by_quality_takes_the_lowest_cer_whose_similarity_stays_near_the_best():
    from utils.training.best import BestTracker

    tracker = BestTracker(metric="quality")
    assert tracker.offer(0, {"cer": 0.5, "speaker_similarity": 0.90, "mos": 2.0})
    assert tracker.offer(10, {"cer": 0.3, "speaker_similarity": 0.88, "mos": 2.0})  # within the margin
    assert not tracker.offer(20, {"cer": 0.1, "speaker_similarity": 0.70, "mos": 3.0})  # lost the voice
    assert not tracker.offer(30, {"cer": 0.3, "speaker_similarity": 0.9, "mos": 1.0})  # same CER, worse MOS
    assert tracker.offer(40, {"cer": 0.3, "speaker_similarity": 0.9, "mos": 2.5})  # same CER, better MOS
    assert tracker.best["step"] == 40 and tracker.stale == 0


def test_patience_counts_evaluations_without_improvement_and_survives_a_checkpoint():
    from utils.training.best import BestTracker

    tracker = BestTracker()
    for step, loss in enumerate([3.0, 2.0, 2.5, 2.1]):
        tracker.offer(step, {"eval_loss": loss})
    assert tracker.stale == 2 and not tracker.exhausted(3) and tracker.exhausted(2)
    restored = BestTracker.from_state(tracker.to_state(), "eval_loss")
    assert restored == tracker
    assert BestTracker.from_state(tracker.to_state(), "quality") == BestTracker(metric="quality")


# --- the training path, on the tiny test bed (its samples are noise: these assert the plumbing) ----------------
SHORT_SENTENCES = ["the river bends twice.", "a small boat"]


@pytest.fixture(scope="session")
def sentences_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sentences") / "sentences.txt"
    path.write_text("\n".join(SHORT_SENTENCES) + "\n")
    return path


@pytest.fixture(scope="session")
def quality_run(train, sentences_file, tmp_path_factory):
    """The reference run's 8 updates with a quality evaluation every 3 (at 0, 3, 6 and the last, 8)."""
    return train(tmp_path_factory.mktemp("quality_run"), quality_every=3, quality_sentences=str(sentences_file))


def quality_events(run_dir: Path) -> list[dict]:
    return read_events(run_dir, "quality")


def test_a_run_with_quality_on_writes_samples_events_and_checkpoint_scores(quality_run):
    from utils.checkpoints.read import read_checkpoint_meta

    events = quality_events(quality_run.run_dir)
    assert [e["step"] for e in events] == [0, 3, 6, 8]
    for event in events:
        assert {"cer", "speaker_similarity", "mos", "duration_ratio", "samples", "reference"} <= event.keys()
        assert [s["text"] for s in event["samples"]] == SHORT_SENTENCES
        folder = quality_run.run_dir / "samples" / f"step_{event['step']}"
        assert json.loads((folder / SCORES_FILE).read_text())["samples"] == event["samples"]
        assert all(Path(s["path"]).is_file() for s in event["samples"]) and (folder / "reference.wav").is_file()
    meta = read_checkpoint_meta(quality_run.run_dir / "checkpoint_8.pth")
    latest = meta["run_state"]["quality"]["latest"]
    assert latest["step"] == 8 and latest["cer"] == events[-1]["cer"]


def test_quality_evaluations_leave_training_bit_identical(quality_run, reference_run):
    import torch
    from conftest import assert_same_training_state

    ours, theirs = quality_run.run_dir / "checkpoint_8.pth", reference_run.run_dir / "checkpoint_8.pth"
    assert_same_training_state(ours, theirs)
    rng = [torch.load(p, weights_only=True)["run_state"]["rng"] for p in (ours, theirs)]
    assert torch.equal(rng[0]["torch"], rng[1]["torch"]) and torch.equal(rng[0]["python"]["state"],
                                                                          rng[1]["python"]["state"])


@pytest.mark.slow
def test_a_resumed_run_with_quality_on_ends_as_the_uninterrupted_one(quality_run, train, sentences_file, tmp_path):
    from conftest import assert_same_training_state

    first = train(tmp_path / "a", quality_every=3, quality_sentences=str(sentences_file), max_steps=4, save_step=4)
    resumed = train(tmp_path / "a", quality_every=3, quality_sentences=str(sentences_file),
                    custom_model=str(first.run_dir / "checkpoint_4.pth"))
    assert resumed.run_dir == first.run_dir and resumed.step == 8
    assert_same_training_state(resumed.run_dir / "checkpoint_8.pth", quality_run.run_dir / "checkpoint_8.pth")
    after = [e for e in quality_events(resumed.run_dir) if e["step"] > 4]
    expected = [e for e in quality_events(quality_run.run_dir) if e["step"] > 4]
    assert [(e["step"], e["cer"], e["samples"][0]["transcript"]) for e in after] == \
        [(e["step"], e["cer"], e["samples"][0]["transcript"]) for e in expected]


@pytest.mark.slow
def test_early_stop_by_quality_ends_the_run_and_a_resume_keeps_the_patience_count(train, tmp_path):
    """The test bed's samples are noise, scored CER 1.0 every time: only step 0 is ever best, so with patience 3
    the run stops after the evaluation at step 3, also when it was stopped at step 2 and resumed."""
    one = tmp_path / "one.txt"
    one.write_text(SHORT_SENTENCES[1] + "\n")
    opts = dict(quality_every=1, quality_sentences=str(one), best_by="quality", early_stop=3)
    whole = train(tmp_path / "whole", **opts)
    assert whole.reason.startswith("early stop: 3 evaluations of quality") and whole.step == 3
    assert (whole.run_dir / "checkpoint_3.pth").is_file()
    best = read_events(whole.run_dir, "best")
    assert [e["step"] for e in best] == [0] and "cer" in best[0]
    part = train(tmp_path / "part", max_steps=2, save_step=2, **opts)
    resumed = train(tmp_path / "part", custom_model=str(part.run_dir / "checkpoint_2.pth"), **opts)
    assert resumed.reason == whole.reason and resumed.step == 3


def test_listings_show_each_checkpoints_latest_scores(quality_run):
    from utils.checkpoints.classify import list_checkpoints

    infos = {Path(i.path).name: i for i in list_checkpoints(quality_run.run_dir)}
    last = quality_events(quality_run.run_dir)[-1]
    assert infos["checkpoint_8.pth"].to_dict()["cer"] == last["cer"]
    assert {"cer", "speaker_similarity", "mos"} <= infos["checkpoint_8.pth"].to_dict().keys()


def test_whisper_leaves_torchs_thread_count_as_it_found_it(reference_clip):
    """CTranslate2 shares OpenMP with torch and left its own thread count behind, which changed the arithmetic of
    training afterwards in the same process (a run scored on real speech was no longer bit-identical)."""
    from utils.quality.asr import WhisperAsr

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as XTTS's dataset module sets it for training
    try:
        asr = WhisperAsr()
        asr.load()
        assert torch.get_num_threads() == 1
        assert asr.transcribe(scorer_audio(reference_clip), "en")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_an_evaluation_runs_on_every_core_and_training_keeps_its_one_thread(tiny_base, tiny_dataset, scorer,
                                                                            reference_clip, tmp_path, monkeypatch):
    """Training runs torch on one thread and waits for the evaluation, which may use every core (or
    OMP_NUM_THREADS where set); training's count comes back afterwards."""
    import os

    from utils.training import quality_eval

    model = training_model(tiny_base, tiny_dataset, tmp_path)
    evaluator = QualityEvaluator(scorer, ["a small boat"], reference_clip, "en", run_dir=tmp_path)
    seen = []
    synthesise = evaluator.synthesise

    def observed(xtts):
        seen.append(torch.get_num_threads())
        return synthesise(xtts)

    monkeypatch.setattr(evaluator, "synthesise", observed)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        evaluator.evaluate(model.xtts, step=1)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        evaluator.evaluate(model.xtts, step=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert seen == [len(os.sched_getaffinity(0)), 1] and quality_eval.evaluation_threads() == 1


def scorer_audio(path: Path) -> np.ndarray:
    from utils.quality import audio

    return audio.load(path)

"""The Train tab's quality plots and sample player, and the Test tab's Score, in a real browser (Debian's chromium
driven by Playwright) against a real WebUI server, on a run folder that training with --quality_every wrote.

Screenshots go to test-artifacts/webui/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import ROOT
from webui_server import HARMLESS_CLI, serve

from tests import speech
from utils.checkpoints.classify import classify_checkpoint
from utils.webui.context import checkpoint_label
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig
from utils.webui.run_history import RunHistory

ARTIFACTS = ROOT / "test-artifacts" / "webui"
QUALITY_EVERY = 4  # 8 updates: evaluations at 0 (the starting weights), 4 and 8


@pytest.fixture(scope="module")
def quality_run(train, tiny_dataset, tmp_path_factory) -> Path:
    """A real run on the test bed with --quality_every: 8 updates, samples of two sentences at 0, 4 and 8, in an
    output folder beside the dataset (a link)."""
    out = tmp_path_factory.mktemp("quality_work")
    (out / "dataset").symlink_to(tiny_dataset.folder, target_is_directory=True)
    sentences = out / "sentences.txt"
    sentences.write_text("The river bends twice.\nA small boat.\n", encoding="utf-8")
    reference = speech.speak(speech.SENTENCES[1], out / "speaker.wav")
    result = train(out, quality_every=QUALITY_EVERY, quality_sentences=str(sentences), reference_wav=str(reference),
                   save_step=QUALITY_EVERY)
    return result.run_dir


@pytest.mark.slow
def test_browser_plots_the_scores_and_plays_a_steps_samples_beside_another(quality_run, tiny_base):
    """Open the Train tab: the picker's newest checkpoint is the quality run's, with its scores in the label; the
    three plots draw the run and the step-0 baseline; the player plays the newest step's samples and the
    reference; a second step shows beside it. The Test tab scores what it speaks."""
    from tools.screenshots import VIEWPORT, launch_browser, missing_browser, open_tab

    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    from playwright.sync_api import expect, sync_playwright

    history = RunHistory(quality_run).read()
    assert [q.step for q in history.quality] == [0, 4, 8]
    out = quality_run.parent.parent.parent
    server = serve(WebUIConfig(output=out, base_dir=tiny_base), TrainingJobs(command=HARMLESS_CLI))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server.url)
            open_tab(page, "Train")
            newest = classify_checkpoint(quality_run / "checkpoint_8.pth", tiny_base / "vocab.json")
            assert isinstance(newest.cer, float)  # the scores it recorded, shown in its label
            label = checkpoint_label(newest, out)
            assert f"· CER {newest.cer:.2f} ·" in label
            expect(page.locator("#checkpoint-picker input")).to_have_value(label, timeout=60_000)
            expect(page.locator("#quality-summary")).to_contain_text(f"Run {quality_run.name}: 3 evaluations",
                                                                     timeout=30_000)
            for key in ("cer", "speaker_similarity", "mos"):  # each plot's legend names both series
                plot = page.locator(f"#quality-plot-{key}")
                expect(plot).to_contain_text("during training", timeout=30_000)
                expect(plot).to_contain_text("step 0 (before training)")
            player = page.locator("#sample-player")
            expect(player).to_have_attribute("data-steps", "8", timeout=30_000)
            expect(player.locator('audio[data-what="sample"]')).to_have_count(2)
            assert_playable(page, player, 3)  # two samples and the reference
            expect(player).to_contain_text("The river bends twice.")

            page.locator("#sample-compare input").click()
            page.get_by_role("option", name=re.compile(r"^step 0 \(before training\) · CER")).click()
            expect(player).to_have_attribute("data-steps", "8 0", timeout=30_000)
            expect(player.locator('audio[data-what="sample"][data-step="0"]')).to_have_count(2)
            assert_playable(page, player, 5)
            page.locator("#sample-step input").click()
            page.get_by_role("option", name=re.compile(r"^step 4 · CER")).click()
            expect(player).to_have_attribute("data-steps", "4 0", timeout=30_000)
            page.locator("#quality-panel").screenshot(path=str(ARTIFACTS / "train-quality.png"))

            open_tab(page, "Test")
            page.locator("#test-model-path input, #test-model-path textarea").first.fill(
                str(quality_run / "checkpoint_8.pth"))
            page.locator("#test-score input").check()
            page.get_by_role("button", name="Synthesise").click()
            expect(page.locator("#test-scores")).to_contain_text(
                re.compile(r"Scores: cer \d\.\d\d · transcript \".*\" · speaker similarity"), timeout=180_000)
            page.screenshot(path=str(ARTIFACTS / "test-scores.png"), full_page=True)
            browser.close()
    finally:
        server.app.close()


def assert_playable(page, player, count: int) -> None:
    """Each of the player's `count` audio elements loads its WAV from the server and has a duration."""
    audios = player.locator("audio")
    assert audios.count() == count
    for i in range(count):
        duration = audios.nth(i).evaluate("""el => new Promise((ok, fail) => {
            if (el.readyState >= 1) return ok(el.duration);
            el.addEventListener('loadedmetadata', () => ok(el.duration));
            el.addEventListener('error', () => fail(new Error('cannot load ' + el.src)));
            el.load();
        })""")
        assert duration > 0.1, (i, duration)


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-s", *os.sys.argv[1:]]))

"""The Train tab's Memory group in a real browser: batch size (a number or auto), precision, gradient
checkpointing and optimizer, with the GPU memory estimate shown before Start and updated as they change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT
from webui_server import HARMLESS_CLI, serve

from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig
from utils.webui.tabs.train import show_memory_estimate

ARTIFACTS = ROOT / "test-artifacts" / "webui"


def test_estimate_line_follows_the_options_and_names_a_bad_batch():
    plain = show_memory_estimate(4, "fp32", False, "adamw", 11)
    lean = show_memory_estimate(4, "bf16", True, "adamw8bit", 11)
    gb = [float(re.search(r"([\d.]+) GB for batch 4", line).group(1)) for line in (plain, lean)]
    assert gb[1] < gb[0]
    assert "largest batch" in show_memory_estimate("auto", "bf16", True, "adamw8bit", 11)
    assert show_memory_estimate("many", "fp32", False, "adamw", 11).startswith("--batch_size must be auto or a number")


def test_memory_group_shows_the_estimate_before_start_and_updates_it(tiny_base, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    from tools.screenshots import VIEWPORT, launch_browser, missing_browser, open_tab

    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    s = serve(WebUIConfig(output=tmp_path, base_dir=tiny_base), TrainingJobs(command=HARMLESS_CLI))
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(s.url)
            open_tab(page, "Train")
            estimate = page.locator("#memory-estimate")
            expect(estimate).to_contain_text("Estimated GPU memory", timeout=30_000)
            before = estimate.inner_text()
            assert "batch 2" in before
            page.locator("#opt-gradient_checkpointing input").check()
            expect(estimate).not_to_have_text(before, timeout=30_000)
            box = page.locator("#opt-batch_size textarea, #opt-batch_size input").first
            box.fill("auto")
            box.blur()
            expect(estimate).to_contain_text("largest batch", timeout=30_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "train-memory.png"), full_page=True)
            browser.close()
    finally:
        s.app.close()

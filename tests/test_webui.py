"""The WebUI against a real Gradio server on loopback: the API endpoints through gradio_client, real CLI
training subprocesses on the test bed, the handler-output rule, the path rule when shared, and a real browser
(Debian's chromium driven by Playwright) picking a checkpoint, resuming from its step and pressing Stop.

Screenshots of every tab and of the run go to test-artifacts/webui/.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT
from webui_server import HARMLESS_CLI, JOB_TIMEOUT_S, client, serve, stop_and_wait

from utils.checkpoints.classify import classify_checkpoint
from utils.webui.app import build_app
from utils.webui.context import WebUIContext
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig

ARTIFACTS = ROOT / "test-artifacts" / "webui"


@pytest.fixture(scope="module")
def work(tiny_dataset, reference_run, tmp_path_factory) -> Path:
    """An output folder holding the test bed's dataset (a link: the same files the reference run trained on)
    and the reference run (hard links: an 8-update run with checkpoint_1..8.pth)."""
    out = tmp_path_factory.mktemp("webui_work")
    (out / "dataset").symlink_to(tiny_dataset.folder, target_is_directory=True)
    ref = out / "run" / "training" / "reference"
    ref.mkdir(parents=True)
    for f in reference_run.run_dir.iterdir():
        if f.is_file() and not f.name.startswith("."):
            os.link(f, ref / f.name)
    return out


@pytest.fixture(scope="module")
def server(work, tiny_base):
    s = serve(WebUIConfig(output=work, base_dir=tiny_base))
    yield s
    stop_and_wait(s.ctx)
    s.app.close()


@pytest.fixture(scope="module")
def shared_server(work, tiny_base):
    """The same work folder served beyond loopback (0.0.0.0): paths outside the work folders are refused."""
    s = serve(WebUIConfig(output=work, base_dir=tiny_base, host="0.0.0.0"), TrainingJobs(command=HARMLESS_CLI))
    yield s
    s.app.close()


@pytest.fixture
def idle(server):
    """A test that trains starts with no job running and leaves none behind."""
    stop_and_wait(server.ctx)
    yield server
    stop_and_wait(server.ctx)


def reference_checkpoint(work: Path, n: int) -> Path:
    return work / "run" / "training" / "reference" / f"checkpoint_{n}.pth"


def wait_status(c, condition, timeout: float = JOB_TIMEOUT_S) -> dict:
    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = c.predict(api_name="/training_status")
        if condition(status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting; last status: {status}")


# --- API endpoints ----------------------------------------------------------------------------------------
def test_api_names_exactly_the_four_endpoints(server):
    api = client(server).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/list_checkpoints", "/start_training", "/training_status",
                                           "/stop_training"}
    assert not api["unnamed_endpoints"]


def test_list_checkpoints_returns_every_checkpoint_with_step_epoch_and_mode(server, work, tiny_base):
    found = client(server).predict(str(work), api_name="/list_checkpoints")
    ours = {Path(c["path"]).name: c for c in found if "/reference/" in c["path"]}
    assert {f"checkpoint_{n}.pth" for n in range(1, 9)} <= set(ours)
    for n in (4, 8):
        expected = classify_checkpoint(reference_checkpoint(work, n), tiny_base / "vocab.json")
        got = ours[f"checkpoint_{n}.pth"]
        assert (got["step"], got["epoch"], got["mode"]) == (n, expected.epoch, "resume")
        assert got["describe"].startswith(f"Resume checkpoint_{n}.pth: step {n}")
    assert found == sorted(found, key=lambda c: (c["mtime"], c["step"]), reverse=True)


def test_list_checkpoints_answers_a_bad_folder_with_an_error(server, work):
    c = client(server)
    assert "does not exist" in c.predict(str(work / "nothing"), api_name="/list_checkpoints")["error"]
    assert "No folder given" in c.predict("", api_name="/list_checkpoints")["error"]


@pytest.mark.slow
def test_start_status_stop_through_the_api_one_job_resumed_and_saved(idle, work, tiny_dataset, tiny_base):
    """Three simultaneous starts: one job. It resumes at the checkpoint's step; Stop saves and exits 0."""
    c = client(idle)
    source = reference_checkpoint(work, 4)
    options = {"custom_model": str(source), "num_epochs": 100, "max_steps": 1000, "save_step": 1000,
               "train_csv": str(tiny_dataset.train_csv), "eval_csv": str(tiny_dataset.eval_csv)}
    clients = [client(idle) for _ in range(3)]
    barrier, results = threading.Barrier(3), []

    def start(cl) -> None:
        barrier.wait()
        results.append(cl.predict(options, api_name="/start_training"))

    threads = [threading.Thread(target=start, args=(cl,)) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["accepted"] for r in results) == [False, False, True], results
    assert all("already" in r["error"] for r in results if not r["accepted"])
    assert len({r["pid"] for r in results}) == 1

    first = wait_status(c, lambda s: s["start_step"] is not None or not s["running"])
    assert first["state"] == "running" and first["mode"] == "resume", first
    assert first["start_step"] == 4 and first["step"] >= 4
    running = wait_status(c, lambda s: s["step"] >= 5 or not s["running"])
    assert running["state"] == "running" and running["loss"] is not None
    assert idle.ctx.jobs.history()[0][0][0] == 5, "the first update after checkpoint_4 is update 5, not 1"

    stopping = c.predict(api_name="/stop_training")
    assert stopping["accepted"] and stopping["state"] in ("stopping", "stopped")
    done = wait_status(c, lambda s: not s["running"])
    assert (done["state"], done["returncode"]) == ("stopped", 0), done
    saved = Path(done["checkpoint"])
    assert saved.is_file() and saved.parent != source.parent and saved.parent.parent == source.parent.parent
    info = classify_checkpoint(saved, tiny_base / "vocab.json")
    assert info.mode == "resume" and info.step == done["step"] >= 5
    assert not c.predict(api_name="/stop_training")["accepted"]


def test_start_training_refuses_bad_options_by_name(server, work):
    c = client(server)
    unknown = c.predict({"epochs": 3}, api_name="/start_training")
    assert not unknown["accepted"] and "Unknown training option(s): epochs" in unknown["error"]
    bad = c.predict({"batch_size": 0}, api_name="/start_training")
    assert not bad["accepted"] and "--batch_size" in bad["error"]
    missing = c.predict({"custom_model": str(work / "none.pth")}, api_name="/start_training")
    assert not missing["accepted"] and "none.pth does not exist" in missing["error"]


# --- shared beyond loopback ---------------------------------------------------------------------------------
def test_shared_server_refuses_paths_outside_the_work_folders(shared_server, work, tiny_dataset):
    c = client(shared_server)
    assert any("/reference/" in x["path"] for x in c.predict(str(work), api_name="/list_checkpoints"))
    for outside in ("/etc", str(work / "dataset"), str(work / ".." / "..")):  # work/dataset links outside
        assert "outside the work folders" in c.predict(outside, api_name="/list_checkpoints")["error"]
    for options in ({"custom_model": "/etc/passwd"}, {"train_csv": str(tiny_dataset.train_csv)}, {},
                    {"output_path": "/tmp"}, {"vocab": "/etc/hostname"}):
        status = c.predict(options, api_name="/start_training")
        assert not status["accepted"] and "outside the work folders" in status["error"], options
    assert shared_server.ctx.jobs.status()["state"] == "idle"


def test_shared_server_serves_files_from_the_work_folders_only(shared_server, work):
    def get(path: str) -> int:
        try:
            with urllib.request.urlopen(f"{shared_server.url}gradio_api/file={path}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert get(str(work / "run" / "training" / "reference" / "config.json")) == 200
    assert get("/etc/passwd") in (403, 404)
    assert get(str(work / "dataset" / "metadata_train.csv")) in (403, 404)


# --- every handler returns one value per output -----------------------------------------------------------------
def _input_values(fn, variant: str) -> list:
    import gradio as gr

    values = []
    for comp in fn.inputs:
        if variant == "none" or isinstance(comp, gr.State):
            values.append(None)
        elif variant == "default":
            values.append(getattr(comp, "value", None))
        elif isinstance(comp, gr.Number):
            values.append(-1)
        elif isinstance(comp, gr.Checkbox):
            values.append(True)
        elif isinstance(comp, gr.File) and comp.file_count == "multiple":
            values.append(["/nonexistent/recording.wav"])
        else:
            values.append("/nonexistent/path.pth")
    return values


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_every_handler_returns_one_value_per_output_on_every_path(host, tiny_base, tmp_path):
    ctx = WebUIContext.create(WebUIConfig(output=tmp_path / "out", base_dir=tiny_base, host=host),
                              TrainingJobs(command=HARMLESS_CLI))
    app = build_app(ctx)
    fns = [f for f in app.fns.values() if f.fn is not None]
    assert len(fns) >= 20
    for fn in fns:
        for variant in ("none", "default", "bad"):
            result = fn.fn(*_input_values(fn, variant))
            where = f"{fn.name} ({variant} inputs)"
            if len(fn.outputs) == 1:
                assert not isinstance(result, tuple), f"{where}: one output, returned a tuple"
            else:
                assert isinstance(result, tuple) and len(result) == len(fn.outputs), (
                    f"{where}: {len(fn.outputs)} outputs, returned {result!r:.200}")
        stop_and_wait(ctx)


# --- the Data, Vocabulary, Test and Export tabs' handlers -----------------------------------------------------------
@pytest.fixture(scope="module")
def fresh(tiny_base, tmp_path_factory) -> WebUIContext:
    """A context on an empty output folder, for handlers that write (import, vocabulary, export)."""
    out = tmp_path_factory.mktemp("webui_fresh")
    return WebUIContext.create(WebUIConfig(output=out, base_dir=tiny_base), TrainingJobs(command=HARMLESS_CLI))


def test_data_tab_imports_a_dataset_and_checks_it(fresh, tiny_dataset):
    from utils.webui.tabs import data as data_tab

    report, status = data_tab.import_existing(fresh, str(tiny_dataset.folder), "auto", "")
    assert "8 train and 2 eval lines" in report and "No problems found" in report, report
    assert status == "Dataset: 8 train and 2 eval lines, language en."
    report, _ = data_tab.check_dataset(fresh)
    assert report.startswith("Dataset check of") and "No problems found" in report
    report, _ = data_tab.transcribe_recordings(fresh, None, "", "en", "tiny", "cpu")
    assert "No recordings given" in report


def test_vocabulary_tab_builds_and_previews_an_extension(fresh, tiny_base, tmp_path):
    from utils.webui.tabs import vocab as vocab_tab

    texts = ["ሰላም ነው። እንደምን አደርክ?", "ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ አገር ናት።", "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።"]
    with (tmp_path / "am.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="|", lineterminator="\n")
        writer.writerow(["audio_file", "text", "speaker_name"])
        writer.writerows((f"wavs/{i}.wav", t, "s") for i, t in enumerate(texts))
    out = fresh.config.output / "vocab" / "vocab_am.json"
    summary, tokens, examples, path = vocab_tab.extend(fresh, str(tiny_base / "vocab.json"), str(tmp_path / "am.csv"),
                                                       "am", "vocab_am", True)
    assert path == str(out) and out.is_file()
    assert "[am]" in tokens and re.search(r"text rows \d+ -> \d+ \(\+\d+\)", summary), summary
    assert len(examples) == 3 and "[UNK]" not in " ".join(examples["tokens after"])
    assert vocab_tab.extend(fresh, str(tiny_base / "vocab.json"), str(tmp_path / "am.csv"), "", "")[0].startswith(
        "⚠️ No language code")


def test_export_tab_writes_the_ready_folder_and_a_zip(fresh, reference_run, tiny_dataset):
    from utils.webui.tabs import export as export_tab

    checkpoint = reference_run.run_dir / "checkpoint_8.pth"
    notice, archive = export_tab.export_checkpoint(fresh, str(checkpoint), "", None, str(tiny_dataset.clips[0]))
    ready = fresh.config.export_dir
    assert notice.startswith("Exported `checkpoint_8.pth`") and Path(archive) == ready.with_suffix(".zip")
    assert {p.name for p in ready.iterdir()} == {"model.pth", "config.json", "vocab.json", "reference.wav"}
    assert classify_checkpoint(ready / "model.pth").mode == "base"
    assert export_tab.export_checkpoint(fresh, None, "", None, None) == (
        "⚠️ No checkpoint chosen: pick one or type its path.", None)


@pytest.mark.slow
def test_test_tab_speaks_with_a_checkpoint(fresh, reference_run, tiny_dataset):
    from utils.webui.tabs import test as test_tab

    audio, notice = test_tab.synthesise(fresh, str(reference_run.run_dir / "checkpoint_8.pth"), "", None,
                                        str(tiny_dataset.clips[0]), "hello there.", "en")
    assert audio is not None, notice
    rate, wav = audio
    assert rate == 24000 and len(wav) > 0


# --- a real browser ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_browser_picks_a_checkpoint_resumes_from_its_step_and_stops(idle, work, tiny_base):
    """Open the page, pick checkpoint_4.pth of the reference run, start: the progress continues at update 5,
    not 1. Close the browser; a new page shows the running job; Stop saves a new checkpoint, exit status 0."""
    from tools.screenshots import VIEWPORT, capture_tabs, launch_browser, missing_browser, open_tab

    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_browser(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(idle.url)
        capture_tabs(page, ARTIFACTS)
        open_tab(page, "Train")
        progress = page.locator("#train-progress")
        expect(progress).to_have_attribute("data-state", re.compile("idle|stopped|finished"), timeout=60_000)
        # Refresh list is a small button beside the picker, not a grey block as tall as the picker: below the
        # button, level with the picker's bottom, the page shows its own background
        refresh, picker = (page.locator(s).bounding_box() for s in ("#refresh-checkpoints", "#checkpoint-picker"))
        assert refresh["height"] < picker["height"] / 2 and refresh["x"] >= picker["x"] + picker["width"]
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        level = int(picker["y"] + picker["height"] - 10)
        assert shot.getpixel((int(refresh["x"] + refresh["width"] / 2), level)) == shot.getpixel((5, level))
        page.locator("#checkpoint-picker input").click()
        page.get_by_role("option", name=re.compile(r"^checkpoint_4\.pth \(run\/training\/reference\)")).click()
        expect(page.locator("#start-plan")).to_contain_text("Resume checkpoint_4.pth: step 4", timeout=30_000)
        expect(page.locator("#start-plan")).to_contain_text("new run folder")
        page.get_by_text("More options").click()
        page.locator("#opt-num_epochs input").fill("100")
        page.locator("#opt-max_steps input").fill("1000")
        page.locator("#start-training").click()
        expect(page.locator("#train-notice")).to_contain_text("Started (pid", timeout=30_000)

        expect(progress).to_have_attribute("data-start-step", "4", timeout=JOB_TIMEOUT_S * 1000)
        assert int(progress.get_attribute("data-step")) >= 4
        expect(progress).to_have_attribute("data-step", re.compile(r"^([5-9]|[1-9]\d+)$"),
                                           timeout=JOB_TIMEOUT_S * 1000)
        deadline = time.time() + 60  # the plot's points are read from the progress file: allow it to catch up
        while not idle.ctx.jobs.history()[0] and time.time() < deadline:
            time.sleep(0.5)
        assert idle.ctx.jobs.history()[0][0][0] == 5, "the first update after checkpoint_4 is update 5, not 1"
        for kind in ("train", "eval"):  # the legend lists both kinds: the plot draws their lines
            expect(page.locator("#loss-plot")).to_contain_text(kind, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "train-running.png"), full_page=True)
        page.close()  # closing the browser page does not stop training

        page = browser.new_page(viewport=VIEWPORT)
        page.goto(idle.url)
        open_tab(page, "Train")
        progress = page.locator("#train-progress")
        expect(progress).to_have_attribute("data-state", "running", timeout=30_000)
        page.locator("#stop-training").click()
        expect(page.locator("#train-notice")).to_contain_text("Stop requested", timeout=30_000)
        expect(progress).to_have_attribute("data-state", "stopped", timeout=JOB_TIMEOUT_S * 1000)
        status = idle.ctx.jobs.status()
        assert status["returncode"] == 0
        saved = Path(status["checkpoint"])
        assert saved.is_file() and saved.parent != reference_checkpoint(work, 4).parent
        assert classify_checkpoint(saved, tiny_base / "vocab.json").step == status["step"] >= 5
        expect(progress).to_contain_text(saved.name)
        # the picker now offers (and preselects) the checkpoint Stop saved
        expect(page.locator("#checkpoint-picker input")).to_have_value(
            re.compile(rf"^{re.escape(saved.name)} \(run\/training\/{re.escape(saved.parent.name)}\)"), timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "train-stopped.png"), full_page=True)
        browser.close()

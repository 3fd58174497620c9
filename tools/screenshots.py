"""Drive the WebUI in a real browser: Debian's chromium through Playwright for Python (never a downloaded one).

Used by the browser test, and to refresh the README's screenshots of a running WebUI:

    python tools/screenshots.py --url http://127.0.0.1:5003/ --out docs/screenshots

Install the browser with `bash tools/install_browser.sh` (Debian's chromium package; Playwright from
requirements.txt). CHROMIUM=/path/to/chromium overrides where it is looked for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TABS = ("Data", "Vocabulary", "Train", "Test", "Export")
VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> Path | None:
    """$CHROMIUM, else Debian's /usr/bin/chromium, else `chromium` on PATH; None when there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def missing_browser() -> str | None:
    """Why the browser cannot run (a sentence saying what to do), or None when it can."""
    if chromium_path() is None:
        return ("Chromium is not installed (looked at $CHROMIUM, /usr/bin/chromium and PATH): run "
                "`bash tools/install_browser.sh` (as root; it installs Debian's chromium package).")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("Playwright for Python is not installed in this environment: run `bash tools/install_browser.sh` "
                "(or `make setup`, which installs requirements.txt).")
    return None


def launch_browser(playwright):
    """A headless chromium from the system, started with flags that keep it off the network."""
    return playwright.chromium.launch(executable_path=str(chromium_path()), args=CHROMIUM_ARGS)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def capture_tabs(page, out_dir: Path, tabs: tuple[str, ...] = TABS, settle_s: float = 1.5) -> list[Path]:
    """Click each tab and save a full-page PNG `<out_dir>/<tab>.png`; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in tabs:
        open_tab(page, name)
        time.sleep(settle_s)  # let the tab's first events (lists, job status) arrive
        path = out_dir / f"{name.lower()}.png"
        page.screenshot(path=str(path), full_page=True)
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot every tab of a running WebUI.")
    parser.add_argument("--url", default="http://127.0.0.1:5003/")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args(argv)
    problem = missing_browser()
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(args.url)
        page.get_by_role("tab", name=TABS[0], exact=True).wait_for(timeout=60_000)
        for path in capture_tabs(page, Path(args.out), settle_s=4):
            print(path)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Install what the WebUI's browser test needs: Debian's chromium and Playwright for Python (pinned in
# requirements.txt). Playwright drives the system chromium (executable_path); no browser is downloaded, and
# `playwright install` is never run. Safe to run again: it does nothing when both are there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

# strace: the resume benchmark (and its test) counts the bytes read from a checkpoint with it.
if { [ ! -x "$CHROMIUM" ] && ! command -v chromium >/dev/null; } || ! command -v strace >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium and strace (for the browser test and the benchmarks)."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium strace >/dev/null
  else
    echo "Chromium or strace is missing: install them (Debian/Ubuntu: sudo apt-get install chromium strace), or run this script as root." >&2
    exit 1
  fi
fi

if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
  if ! grep -qE '^playwright==' requirements.txt; then
    echo "requirements.txt pins no playwright version: add playwright==<version> there." >&2
    exit 1
  fi
  echo "Installing requirements.txt (Playwright for Python) into $(dirname "$(dirname "$PY")")."
  "$PY" -m pip --disable-pip-version-check -q install -r requirements.txt
fi

"$PY" - <<'EOF'
from playwright.sync_api import sync_playwright
import sys
sys.path.insert(0, ".")
from tools.screenshots import launch_browser
with sync_playwright() as p:
    browser = launch_browser(p)
    print(f"Browser ready: chromium {browser.version} driven by Playwright.")
    browser.close()
EOF

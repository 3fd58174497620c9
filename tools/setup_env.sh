#!/usr/bin/env bash
# Create .venv/ and install everything the project needs. Called by `make setup`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.13.0
# TORCH_INDEX_URL: optional extra index for a specific torch build (see README, "GPU").
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}

# XTTS loads audio with torchaudio.load, which decodes through torchcodec and FFmpeg's shared libraries.
ffmpeg_libs="libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4"
if ! ldconfig -p | grep -q 'libavformat\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing FFmpeg's shared libraries from Debian (needed to read audio)."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $ffmpeg_libs >/dev/null
  else
    echo "FFmpeg's shared libraries are missing: install FFmpeg (Debian/Ubuntu: sudo apt-get install ffmpeg), then run make setup again." >&2
    exit 1
  fi
fi

# The tests of the voice-quality scorers (tests/speech.py) speak known sentences with espeak-ng; sox mixes audio.
speech_tools=""
command -v espeak-ng >/dev/null || speech_tools="$speech_tools espeak-ng"
command -v sox >/dev/null || speech_tools="$speech_tools sox"
if [ -n "$speech_tools" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing$speech_tools from Debian (speech for the tests)."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $speech_tools >/dev/null
  else
    echo "Not installed:$speech_tools (the tests speak with espeak-ng and sox): on Debian/Ubuntu run sudo apt-get install espeak-ng sox, then make setup again." >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first and alone: a plain `pip install torch` elsewhere may pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  if [ -n "$TORCH_INDEX_URL" ]; then
    "${pip[@]}" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" install "torch==$TORCH_VERSION"
  fi
fi
"${pip[@]}" install -r requirements.txt
# resemblyzer (the speaker encoder of utils/quality) without its declared dependencies: it asks for webrtcvad, a
# source package that needs a C compiler (webrtcvad-wheels in requirements.txt provides the same module), and
# for the `typing` backport, which must not shadow Python 3.11's own. Its real needs are in requirements.txt.
"${pip[@]}" install --no-deps resemblyzer==0.1.4
.venv/bin/python tools/drop_torchaudio_extension.py
.venv/bin/python -c "import TTS.tts.models.xtts, trainer, gradio" 
echo "Environment ready: .venv/"

#!/usr/bin/env bash
# Download the wheels the GPU benchmark needs on the lent device machine into .whl/ (CPython 3.12, Linux x86-64).
#
# That machine has no network. Its python3 (3.12) already holds torch 2.11 (CUDA), torchaudio 2.11, numpy, scipy,
# numba, scikit-learn, tensorboard, tokenizers, huggingface_hub, ... but not coqui's packages and the audio
# libraries below. benchmarks/device_run.sh installs exactly these files there with `pip --no-index --no-deps
# --target`, so the list must be complete on its own: each missing requirement of coqui-tts 0.28 (extras left out)
# is named, at the version requirements.txt pins. transformers is carried at our pin (5.23.0) because the device's
# 5.17 is older than what we test with; its requirements (huggingface-hub>=1.31, tokenizers>=0.23.1,<0.24,
# safetensors>=0.8) are met by the device's own packages, and regex is carried at our pin too (transformers 5.23 needs
# a recent one; the device's version is not known). Not carried: torchcodec (its decoder needs FFmpeg's
# libraries, which that machine is not known to have; benchmarks/device_shim/ reads WAV through soundfile instead)
# docopt (sdist only; imported only by num2words' own command-line script), and pysbd (imported only by coqui's
# inference Synthesizer; its wheel also installs a top-level package named `benchmarks`, which would shadow ours).
#
#   bash tools/device_wheels.sh        # then name .whl in the device call's `carry`
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.whl
WHEELS=(
  coqui-tts==0.28.0
  coqui-tts-trainer==0.4.0
  coqpit-config==0.2.5
  transformers==5.23.0
  anyascii==0.3.3
  ko-speech-tools==0.1.0
  num2words==0.5.14
  inflect==7.6.0
  typeguard==4.6.1
  more-itertools==11.2.1
  jaraco.functools==4.6.0
  monotonic-alignment-search==0.2.1
  librosa==0.11.0
  audioread==3.1.0
  decorator==5.3.1
  pooch==1.9.0
  platformdirs==4.14.8
  soxr==1.1.0
  soundfile==0.14.0
  cffi==2.1.1
  pycparser==3.12
  regex==2026.11.19
)

grep -qxF "/$DEST/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info && echo "/$DEST/" >>.git/info/exclude; }
rm -rf "$DEST"
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d "$DEST" "${WHEELS[@]}"

count=$(find "$DEST" -type f -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
  echo "Expected ${#WHEELS[@]} wheels in $DEST, found $count." >&2
  exit 1
fi
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
if [ "$bytes" -gt $((50 * 1024 * 1024)) ]; then
  echo "The wheels take $((bytes / 1024 / 1024)) MiB: over the 50 MiB allowed for them (the carried tree is 64 MiB)." >&2
  exit 1
fi
echo "$count wheels, $((bytes / 1024)) KiB, in $DEST/:"
ls -1 "$DEST"

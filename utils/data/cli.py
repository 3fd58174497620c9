"""The command line of the dataset tools, `python utils/formatter.py transcribe|import|validate ...`: each
subcommand is one call of prepare_from_audio, import_dataset or validate_dataset, its progress printed as text
or JSON lines. A user-input fault prints one sentence and exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from utils.data.folder import dataset_dir_for
from utils.data.importers import import_dataset
from utils.data.options import ImportOptions, PrepareOptions
from utils.data.prepare import prepare_from_audio
from utils.data.progress import Progress, ProgressCallback
from utils.data.transcribe import FasterWhisperTranscriber
from utils.data.validate import validate_dataset
from utils.errors import UserInputError
from utils.options import add_arguments, from_namespace
from utils.xtts import MAX_TEXT_TOKENS

DESCRIPTION = ("Datasets for XTTS fine-tuning: recordings -> transcribed clips -> coqui CSVs; import and validate "
               "datasets.")


def console_progress(as_json: bool, stream=None) -> ProgressCallback:
    """Print each progress event as a line of text, or as a JSON line {"event": "progress", ...}."""

    def report(p: Progress) -> None:
        print(json.dumps({"event": "progress", **p.to_dict()}) if as_json else str(p), file=stream or sys.stdout,
              flush=True)

    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python utils/formatter.py", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, output: bool = True) -> None:
        if output:
            where = p.add_mutually_exclusive_group(required=True)
            where.add_argument("--out_path", "--out-path", help="output folder: the dataset goes to <out_path>/dataset")
            where.add_argument("--dataset", help="the dataset folder itself")
        p.add_argument("--json", action="store_true", help="print progress and the result as JSON lines")
        p.add_argument("--debug", action="store_true", help="show Python tracebacks")

    t = sub.add_parser("transcribe", help="recordings -> transcribed clips -> dataset CSVs")
    t.add_argument("audio", nargs="+", help="audio files (wav, mp3, flac, ogg, m4a) or folders holding them")
    add_arguments(t, PrepareOptions, dashed=True, show_defaults=True)
    t.add_argument("--whisper_cache", "--whisper-cache", help="folder of the Hugging Face cache for Whisper models")
    common(t)

    i = sub.add_parser("import", help="LJSpeech or coqui CSVs -> dataset CSVs")
    i.add_argument("source", help="LJSpeech folder (metadata.csv, wavs/), coqui dataset folder or CSV")
    i.add_argument("--eval_csv", "--eval-csv", help="the source's eval CSV (coqui), if it has one elsewhere")
    i.add_argument("--format", default="auto", choices=("auto", "ljspeech", "coqui"), help="the source's format")
    add_arguments(i, ImportOptions, dashed=True, show_defaults=True)
    common(i)

    v = sub.add_parser("validate", help="check a dataset and print a report (exit 1 when it has errors)")
    v.add_argument("dataset", help="dataset folder, or its train CSV")
    v.add_argument("--eval_csv", "--eval-csv", help="eval CSV (default: metadata_eval.csv beside the train CSV)")
    v.add_argument("--vocab", help="vocab.json to check the text against (characters, token counts)")
    v.add_argument("--language", help="language code (default: lang.txt)")
    v.add_argument("--max_audio_length", "--max-audio-length", type=float, default=11.0,
                   help="longest clip in seconds (default: 11)")
    v.add_argument("--min_conditioning_seconds", "--min-conditioning-seconds", type=float, default=3.0,
                   help="shortest clip in seconds (default: 3)")
    v.add_argument("--max_text_tokens", "--max-text-tokens", type=int, default=MAX_TEXT_TOKENS,
                   help=f"longest text in tokens (default: {MAX_TEXT_TOKENS})")
    common(v, output=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (UserInputError, ValueError, OSError) as e:  # DatasetError, TranscriberUnavailable, bad options
        if args.debug:
            raise
        message = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}."
        print(json.dumps({"event": "error", "message": message}) if args.json else f"Error: {message}",
              file=sys.stderr if not args.json else sys.stdout, flush=True)
        return 1
    except KeyboardInterrupt:
        print("Stopped. Recordings finished so far are saved in the dataset; run again to continue.", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        report = validate_dataset(args.dataset, args.eval_csv, vocab_path=args.vocab, language=args.language,
                                  max_audio_seconds=args.max_audio_length,
                                  min_conditioning_seconds=args.min_conditioning_seconds,
                                  max_text_tokens=args.max_text_tokens,
                                  progress=console_progress(args.json, sys.stdout if args.json else sys.stderr))
        print(json.dumps({"event": "report", **report.to_dict()}) if args.json else report.format())
        return 0 if report.ok else 1
    dataset = Path(args.dataset) if args.dataset else dataset_dir_for(args.out_path)
    progress = console_progress(args.json)
    if args.command == "transcribe":
        options = from_namespace(PrepareOptions, args)
        options.check()
        transcriber = FasterWhisperTranscriber(options.whisper_model, device=options.device,
                                               compute_type=options.compute_type, download_root=args.whisper_cache)
        transcriber.model_path()  # a missing model is said now, before any recording is read
        summary = prepare_from_audio(args.audio, dataset, transcriber, options, progress)
    else:
        options = from_namespace(ImportOptions, args)
        summary = import_dataset(args.source, dataset, options, progress, eval_csv=args.eval_csv,
                                 source_format=args.format)
    print(json.dumps({"event": "done", **summary.to_dict()}) if args.json else summary.format(), flush=True)
    return 0

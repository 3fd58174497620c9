"""The command line of the dataset tools, `python utils/formatter.py transcribe|import|validate|filter ...`:
each subcommand is one call of prepare_from_audio, import_dataset, validate_dataset (with the quality gate's
assess for --quality) or filter_dataset/restore_dataset, its progress printed as text or JSON lines. A
user-input fault prints one sentence and exits 1. Each first finishes or rolls back a change of the CSVs that
a killed command left (csvset.recover)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from utils.data.csvset import recover
from utils.data.filter import dataset_lines, filter_dataset, restore_dataset
from utils.data.folder import dataset_dir_for
from utils.data.gate import KINDS, ClipLine, GateThresholds, assess
from utils.data.importers import import_dataset
from utils.data.metadata import parse_csv
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
    v.add_argument("--quality", action="store_true", help="also listen to every clip: transcript mismatch, noise, "
                   "clipping, silence, speaking rate, other speaker (measurements kept in "
                   "quality_measurements.json beside the CSVs and reused until a clip changes)")
    quality_options(v)
    common(v, output=False)

    f = sub.add_parser("filter", help="drop the lines the quality gate flags (kept in metadata_dropped.csv), or "
                       "--restore the CSVs as before the first filter")
    f.add_argument("dataset", help="dataset folder")
    f.add_argument("--drop", nargs="+", metavar="KIND", choices=KINDS,
                   help=f"drop lines flagged with these kinds (default: every kind): {', '.join(KINDS)}")
    f.add_argument("--restore", action="store_true", help="give back the CSVs exactly as they were before the first "
                   "filter")
    f.add_argument("--language", help="language code (default: lang.txt)")
    quality_options(f)
    common(f, output=False)
    return parser


def quality_options(p: argparse.ArgumentParser) -> None:
    """--whisper_model and one flag per threshold of the quality gate."""
    p.add_argument("--whisper_model", "--whisper-model", metavar="NAME_OR_DIR", default=None,
                   help="faster-whisper model (a size or a folder) for the transcripts. Default: the packaged tiny.en "
                   "(English only, offline) when installed, else large-v3; measurements made with another model "
                   "are reused unless this is given")
    add_arguments(p.add_argument_group("quality thresholds (when a clip is flagged)"), GateThresholds, dashed=True,
                  show_defaults=True)


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
    dataset = Path(args.dataset) if args.dataset else dataset_dir_for(args.out_path)
    folder = dataset.parent if dataset.suffix.lower() == ".csv" else dataset
    if folder.is_dir():
        note = recover(folder)
        if note:
            print(json.dumps({"event": "recovered", "message": note}) if args.json else note, file=sys.stderr,
                  flush=True)
    if args.command == "validate":
        return _validate(args)
    if args.command == "filter":
        return _filter(args, dataset)
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


def _validate(args: argparse.Namespace) -> int:
    progress = console_progress(args.json, sys.stdout if args.json else sys.stderr)
    report = validate_dataset(args.dataset, args.eval_csv, vocab_path=args.vocab, language=args.language,
                              max_audio_seconds=args.max_audio_length,
                              min_conditioning_seconds=args.min_conditioning_seconds,
                              max_text_tokens=args.max_text_tokens, progress=progress)
    if args.quality:
        thresholds = from_namespace(GateThresholds, args)
        lines = [ClipLine(path, row) for path in (report.train_csv, report.eval_csv) for row in parse_csv(path).rows]
        report.quality = assess(lines, report.train_csv.parent, thresholds, whisper_model=args.whisper_model,
                                language=report.language, remeasure_with_model=args.whisper_model is not None,
                                progress=progress)
    print(json.dumps({"event": "report", **report.to_dict()}) if args.json else report.format())
    return 0 if report.ok else 1


def _filter(args: argparse.Namespace, dataset: Path) -> int:
    if args.restore:
        if args.drop:
            raise ValueError("--restore gives back the CSVs as they were before the first filter; it takes no --drop.")
        message = restore_dataset(dataset)
        print(json.dumps({"event": "done", "restored": True, "message": message}) if args.json else message)
        return 0
    dataset_lines(dataset)  # a missing or broken CSV is said before any model loads
    result = filter_dataset(dataset, args.drop, from_namespace(GateThresholds, args), whisper_model=args.whisper_model,
                            language=args.language, progress=console_progress(args.json, sys.stderr if not args.json
                                                                              else sys.stdout))
    print(json.dumps({"event": "done", **result.to_dict()}) if args.json else result.format(), flush=True)
    return 0

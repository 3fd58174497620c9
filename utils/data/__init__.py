"""Datasets for XTTS fine-tuning: recordings -> transcribed clips -> coqui CSVs; import and validate datasets.

A dataset is a folder (usually `<output>/dataset/`) holding:

    wavs/                 clips, 22.05 kHz mono 16-bit WAV
    metadata_train.csv    audio_file|text|speaker_name   (header; paths relative to the CSV)
    metadata_eval.csv     same format
    lang.txt              the dataset's language code (en, de, am, ...)
    sources.json          which recordings made which clips, so that adding recordings redoes no old ones

Three entry points, called by the CLI (`cli.py`, launched as `python utils/formatter.py`) and the WebUI alike:

    prepare.prepare_from_audio(inputs, dataset_dir, transcriber, options, progress)   recordings -> dataset
    importers.import_dataset(source, dataset_dir, options, progress)    LJSpeech or coqui CSVs -> dataset
    validate.validate_dataset(train_csv, eval_csv, ...) -> ValidationReport   a report a person reads

and `metadata.load_samples(csv_path, language)` gives the trainer its sample list. Anticipated faults raise
`errors.DatasetError` (a ValueError) with one sentence naming the file, the line and what to do.

The modules, leaves first: errors, options, progress, transcribe (Whisper), audio (decode, resample, write),
clips (where to cut a recording), metadata (reading the CSVs), folder (the dataset folder being written),
prepare, importers, validate, cli. Each imports its siblings by full path; this file imports nothing.
"""

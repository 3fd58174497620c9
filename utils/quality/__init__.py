"""Voice-quality scores of generated speech, each from a model independent of the one being trained.

`scorer.Scorer` loads faster-whisper (character error rate of a transcript), resemblyzer (speaker similarity
to a reference), DNSMOS (predicted MOS) and Silero VAD (duration against the text) once, then scores many
clips. `python utils/quality.py --help` is the command line (`cli.py`). Importing this package imports none of
those models' libraries."""

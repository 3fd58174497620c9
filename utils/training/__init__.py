"""Training: plan a start from a checkpoint's content, the run folder, progress events, the trainer, the CLI."""

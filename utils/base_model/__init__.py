"""The XTTS-v2 base model: its folder checked file by file, and its download."""

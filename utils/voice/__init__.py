"""A trained voice: export it as a standalone XTTS model folder, load it, and synthesise speech with it."""

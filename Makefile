# One-command set-up, run and test. See README.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test demo lint bench

setup: $(STAMP)

# Re-run the installer whenever what it installs changes; a fresh stamp makes a second `make setup` a no-op.
$(STAMP): requirements.txt tools/setup_env.sh tools/drop_torchaudio_extension.py
	bash tools/setup_env.sh
	touch $@

run: setup
	$(PY) webui.py

# Tests run in 2 worker processes: training here uses one thread, so 2 cores run 2 tests at once.
TEST_WORKERS ?= 2

test: setup
	bash tools/install_browser.sh
	$(PY) -m pytest -n $(TEST_WORKERS)

demo: setup
	$(PY) utils/gpt_train.py --selfcheck

lint: setup
	$(PY) -m ruff check .

# Full-size benchmarks (XTTS-v2-shaped checkpoints of ~5.5 GB; minutes, several GB of disk). See README.
bench: setup
	$(PY) benchmarks/run_all.py --size full --results benchmarks/RESULTS.md

# One-command set-up, run and test. See README.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test demo lint

setup: $(STAMP)

# Re-run the installer whenever what it installs changes; a fresh stamp makes a second `make setup` a no-op.
$(STAMP): requirements.txt tools/setup_env.sh tools/drop_torchaudio_extension.py
	bash tools/setup_env.sh
	touch $@

run: setup
	$(PY) webui.py

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) utils/gpt_train.py --selfcheck

lint: setup
	$(PY) -m ruff check .

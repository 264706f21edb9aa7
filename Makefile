# DeepDrummer Live: `make run` starts the daemon on the built-in kit, `make test` runs every test.
# Both set up .venv in the repo root on first use; `make test` also installs the Debian packages
# the tests use (JACK's dummy driver, Pure Data) when run as root.

PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
ARGS      ?=
STAMP     := $(VENV)/.installed
DEB_PKGS  := jackd2 puredata-core tmux libjack-jackd2-0 libportaudio2 libportmidi0 liblo7 libsndfile1 lua5.4 fluidsynth fluid-soundfont-gm liblo-tools chromium

.PHONY: run test venv debs bench learning-bench clean kits critics

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip

# torch 2.13.0 first when none is present: pip finds this CPU build on this machine's disk,
# while a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || { echo "installing torch 2.13.0 (CPU build)"; \
		$(BIN)/python -m pip install --progress-bar on torch==2.13.0; }
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# The built-in kits ship in the package (deepdrummer_live/data/kits): rebuild them after changing a
# table in sound/synth.py (deterministic, so an unchanged table leaves git clean).
kits: $(STAMP)
	$(BIN)/deepdrummer-live kits build --out deepdrummer_live/data/kits

# The built-in kits' shipped hearing critics (package data: deepdrummer_live/data/critics), made
# deterministically by the project's code; rebuild them after changing the critic, the hearing or a kit.
critics: venv
	$(BIN)/deepdrummer-live critic pretrain-hearing

run: venv
	$(BIN)/deepdrummer-live run --autoplay $(ARGS)

# Debian packages for the real-parts tests: only as root, only those missing.
debs:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi; \
	else echo "not root: skipping Debian packages ($(DEB_PKGS)); tests needing them skip"; fi

test: debs venv
	$(BIN)/python -m pytest -q $(ARGS)

bench: venv
	$(BIN)/deepdrummer-live bench --json $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

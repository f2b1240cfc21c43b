# Two entry points (see README): `make demo` and `make test`. Each sets up .venv idempotently.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first, pinned, so that a multi-GB CUDA build is never pulled
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[dev,minilm]"
	touch $(STAMP)

# Debian's Chromium for the browser test of the web page (skipped, with the reason, if it can't be had)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	-(command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)) \
	  || echo "note: chromium not installed; the browser test will be skipped"

.PHONY: setup demo demo-seeds test
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/realm demo $(ARGS)

# the headline table: the demo under 3 training seeds, as mean ± sd (runs/demo-seeds/results-seeds.md)
demo-seeds: $(STAMP)
	$(VENV)/bin/realm demo --seeds 0,1,2 --out runs/demo-seeds $(ARGS)

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/python -m pytest -q -n 2 $(ARGS)

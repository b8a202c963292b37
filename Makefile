# fluxwatch: `make demo` runs the main job, `make test` the tests. Both set up everything from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
SYSTEM := .system-packages

.PHONY: demo train docs test lint test-system test-slow test-reliability bench clean

# Debian packages: Java 17 and Maven fetch and run the Kafka broker; prometheus checks the dashboards;
# chromium and its driver run the review desk's browser tests.
$(SYSTEM):
	@missing=""; for c in java:openjdk-17-jre-headless mvn:maven promtool:prometheus chromium:chromium chromedriver:chromium-driver; do \
	  command -v $${c%%:*} >/dev/null || missing="$$missing $${c##*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update && apt-get install -y --no-install-recommends $$missing; fi
	touch $@

# constraints.txt pins the versions tested together, so that a fresh machine installs those whatever the index
# offers that day (a new release once sent pip's resolver past its depth limit).
$(STAMP): pyproject.toml constraints.txt | $(SYSTEM)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m devtools.kafka_broker fetch
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(PY) -m demo

# Reproduces the shipped CNN bundle (models/cnn, the learned detector) in runs/default/bundle, about 55 minutes on
# 2 cores; `$(PY) -m training.default --ship` then replaces the shipped one. (The default bundle, models/default, is
# the new-flux detector: nothing to train.)
train: $(STAMP)
	$(PY) -m training.default

# The documentation site (mkdocs.yml, docs/) into build/site, in strict mode: a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --quiet

# The unit and integration tests (about 10 min on 2 cores); the system tests (end-to-end runs, about 20 min) and the
# hour-long ones have targets of their own.
test: lint docs
	$(PY) -m pytest -m "not system and not slow and not reliability" --durations=15

test-system: $(STAMP)
	$(PY) -m pytest -m "system" --durations=15

# ruff (lint and import order), the published alert schema against its model, and mypy.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m contract.events --check || { echo "deploy/schemas is stale: run $(PY) -m contract.events"; exit 1; }
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# The reliability suite (issue 13): each part records its counts in build/reliability/*.json; the summary prints them.
test-reliability: $(STAMP)
	rm -rf build/reliability
	$(PY) -m pytest -m reliability
	$(PY) -m devtools.reliability_summary

bench: $(STAMP)
	$(PY) -m bench.ingest
	$(PY) -m bench.dataset
	$(PY) -m bench.latency
	$(PY) -m bench.hmi
	$(PY) -m bench.backfill
	$(PY) -m bench.alerts
	$(PY) -m bench.review

clean:
	rm -rf $(VENV) $(SYSTEM) data runs build *.egg-info deploy/kafka/lib

# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PORT   ?= 8501
HOST   ?= 127.0.0.1
TORCH_PIN ?= torch==2.13.0
# The stamp is keyed by the hash of every install input, so a ready venv installs nothing again.
REQ_HASH := $(shell cat requirements.lock requirements.txt requirements-dev.txt Makefile 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(REQ_HASH)

.PHONY: run test venv lint format demo clean bench-quick

venv: $(STAMP)

# Exactly the tested versions, each checked against its hash (requirements.lock, made from
# requirements.txt and requirements-dev.txt: see README); then torch, whose own dependencies the
# lock already holds, from its exact pin.
$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-deps --require-hashes -r requirements.lock
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) check
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

run: venv
	$(PY) -m storage seed-demo
	$(VENV)/bin/streamlit run serve.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

lint: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-quick: venv
	$(PY) -m benchmarks.metrics_speed --quick
	$(PY) -m benchmarks.loss_speed --quick
	$(PY) -m benchmarks.cluster_speed --quick
	$(PY) -m benchmarks.render_speed --quick
	$(PY) -m benchmarks.sparse_vs_dense --quick
	$(PY) -m benchmarks.active_vs_random --quick
	$(PY) -m benchmarks.label_selection --quick
	$(PY) -m benchmarks.embed_speed --quick
	$(PY) -m benchmarks.large_image --quick
	$(PY) -m benchmarks.real_nuclei --quick
	$(PY) -m benchmarks.pretrained_start --quick
	$(PY) -m benchmarks.demo_first_model --quick
	$(PY) -m benchmarks.click_segment --quick
	$(PY) -m benchmarks.annotation_effort --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

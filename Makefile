# OnCallM: `make help` lists every target.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CONTROLPLANE_DIR ?= /tmp/oncallm-controlplane
export ONCALLM_REPO := $(CURDIR)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv and install OnCallM with its test tools

model-server: install ## llama.cpp's OpenAI-compatible server and SmolLM2 into .venv (built once, cached in ~/.cache/oncallm)
	tools/model-server/install $(VENV)

build: install ## build the local control plane from Go modules (cached: a rebuild costs nothing)
	$(VENV)/bin/oncallm controlplane build

up: build ## start the local control plane; prints the KUBECONFIG to export
	$(VENV)/bin/oncallm controlplane up --dir $(CONTROLPLANE_DIR)

down: install ## stop the local control plane
	$(VENV)/bin/oncallm controlplane down --dir $(CONTROLPLANE_DIR)

NODE_DIR ?= /tmp/oncallm-cp-node

node-images: install ## build the local node's images (pause, busybox, CoreDNS, python base, OnCallM's Dockerfile); cached
	$(PY) -m oncallm.controlplane.images

up-node: build node-images ## as root: the control plane with a real node (kubelet, containerd, kube-proxy, CoreDNS, scheduler)
	$(VENV)/bin/oncallm controlplane up --node --dir $(NODE_DIR)

down-node: install ## stop the control plane with the node; puts the host's settings back
	$(VENV)/bin/oncallm controlplane down --dir $(NODE_DIR)

test-node: build node-images ## as root: the node suite (real failures diagnosed end to end, OnCallM as pods)
	$(VENV)/bin/pytest tests/node

.PHONY: node-images up-node down-node test-node

demo: build ## OnCallM's main job on the local control plane: plant failures, send alerts, show the analyses
	$(VENV)/bin/oncallm --log-level WARNING demo --dir $(CONTROLPLANE_DIR)

run: install ## operator and sidecar against the current kubeconfig (a real cluster)
	$(VENV)/bin/oncallm run

test: build ## the whole test suite: unit, real control plane, Alertmanager, Prometheus, browser
	$(VENV)/bin/pytest

test-unit: install ## only the tests that need no cluster (seconds)
	$(VENV)/bin/pytest tests/unit

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy

eval: build ## score tests/scenarios on the local control plane: a score per split, a confusion matrix, N/M correct
	$(VENV)/bin/oncallm --log-level WARNING eval tests/scenarios --dir $(CONTROLPLANE_DIR)

eval-offline: install ## the same scores in memory, without the control plane (seconds; the same answers)
	$(VENV)/bin/oncallm --log-level WARNING eval tests/scenarios --offline

eval-model: build model-server ## the scenarios with the rules alone and with SmolLM2 on llama.cpp's server, side by side (N/M correct each, model accepted in K/M)
	$(PY) tools/model-server/eval tests/scenarios --dir $(CONTROLPLANE_DIR) $(EVAL_MODEL_ARGS)

bench: build ## benchmarks on the local control plane; prints figures
	$(PY) bench/run.py

e2e: install ## the kind suite (needs Docker and kind; skips elsewhere)
	$(VENV)/bin/pytest tests/e2e

clean: ## remove the virtualenv and caches (the control plane binary cache stays in ~/.cache/oncallm)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts

.PHONY: help install model-server build up down demo run test test-unit lint eval eval-offline eval-model bench e2e clean

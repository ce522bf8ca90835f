# Two set-up commands for a fresh Debian machine, as root:
#   make demo   install everything, bring up a 4-node virtual fleet, run the main job on it
#   make test   install everything, run the test suite (what .ci/run calls)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= /usr/bin/python3
VENV := .venv
LAB := $(VENV)/bin/lab
STAMPS := .stamps

# System packages: the fleet (debootstrap, systemd-nspawn, ssh), the venv, PostgreSQL for the
# database tests and Debian's chromium for checking HTML reports in a real browser.
# pdudaemon: the virtual fleet's PDU (Debian's real program; `lab fleet up` starts it, power goes through its HTTP API)
APT_PACKAGES := debootstrap systemd-container openssh-client python3 python3-venv python3-dev \
	gcc kmod util-linux mount procps iproute2 postgresql ca-certificates chromium pdudaemon
APT_KEY := $(shell echo $(APT_PACKAGES) | sha256sum | cut -c1-12)
PY_KEY := $(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help setup demo test lint clean

help:
	@echo "make demo   install everything and run the main job on a 4-node virtual fleet (SQLite)"
	@echo "make test   install everything and run the test suite"

$(STAMPS)/apt-$(APT_KEY):
	@mkdir -p $(STAMPS)
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
	@touch $@

$(STAMPS)/venv-$(PY_KEY): $(STAMPS)/apt-$(APT_KEY)
	@mkdir -p $(STAMPS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

setup: $(STAMPS)/venv-$(PY_KEY)

demo: setup
	# HailoRT versions the (emulated) archive does not carry, as a person downloads them from Hailo
	$(LAB) fleet hailo-files hailo-files --models models
	$(LAB) fleet up --profile profiles/mixed.yaml --time-scale 0.02
	$(LAB) run scenarios/cma_soak.yaml --inventory virtual --name demo-$$(date +%Y%m%d-%H%M%S)
	$(LAB) campaigns
	@echo "the fleet stays up: '$(LAB) report CAMPAIGN --format html -o report.html' for a report,"
	@echo "'$(LAB) fleet down' removes the fleet (every process, mount and file of it)"

test: setup
	scripts/with-postgres $(VENV)/bin/pytest -q -p no:cacheprovider tests

lint: setup
	$(VENV)/bin/ansible-lint --profile production playbooks roles

clean:
	-$(LAB) fleet down
	rm -rf $(VENV) $(STAMPS) lab.egg-info

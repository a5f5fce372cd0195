# The two commands a new user needs (see README):  `make up`  and  `make test`.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# The stack needs only Prometheus from Debian; the tests also drive nginx and Chromium.
APT_UP := prometheus
APT_TEST := prometheus nginx chromium

.PHONY: up down test lint

up: $(STAMP)
	@$(MAKE) --no-print-directory apt PACKAGES="$(APT_UP)"
	$(VENV)/bin/twotower up

down:
	$(VENV)/bin/twotower down

test: $(DEV_STAMP)
	@$(MAKE) --no-print-directory apt PACKAGES="$(APT_TEST)"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The product for `up`, with the teacher that `twotower train --corpus` distils a user's corpus
# from (docs/corpora.md); the test tools on top for `test` (a second, short install).
# --no-compile: Python compiles what it imports on first use, instead of every file of every
# package up front, which made the install longer (docs/results/first-run.md).
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -e '.[teacher]'
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	touch $(DEV_STAMP)

# Debian's packages, installed only when missing; skipped where apt is absent.
.PHONY: apt
apt:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing from Debian"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

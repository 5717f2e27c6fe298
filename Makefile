# superd developer entry points.  See README.rst.
#
#   make run     set up .venv and run superd in the foreground on conf/
#   make test    set up .venv and run the whole test suite
#   make check   ruff + import contracts + mypy + the whole test suite
#   make docs    the HTML docs (build/docs/html) and the man pages (docs/man),
#                warnings as errors
#   make bench   superd against xinetd (bench/run)
#   make newest-twisted
#                report what the newest Twisted release breaks (never fails)
#   make clean   remove build output, caches and ./state (keeps .venv)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.superd-installed
PYTEST_ARGS ?=
# The tests run in a shuffled order (pytest-randomly) that changes with each
# commit and is the same in every run of one commit; pytest prints it as
# --randomly-seed=N, and `make test SEED=N` runs that order again.
SEED ?= $(shell printf '%d' 0x$$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0))

.PHONY: all venv run test check lint typecheck docs bench newest-twisted clean distclean

all: test

# The editable install must use compat mode: the import-hook mode of newer
# setuptools hides twisted/plugins/ from Twisted's plugin discovery.  The
# dropin cache is written at install time so that a daemon running as another
# user does not try (and fail) to write it on every start.
$(STAMP): setup.cfg pyproject.toml
	@# Debian ships venv support separately (python3-venv); install it when we can.
	@if ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get install -y python3-venv || { apt-get update && apt-get install -y python3-venv; }; \
	    else \
	        echo "make: $(PYTHON) cannot create virtualenvs; run: sudo apt-get install python3-venv" >&2; \
	        exit 1; \
	    fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,dev]' --config-settings editable_mode=compat
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

# The man pages, where man finds them for a virtualenv whose bin is on PATH
# (<prefix>/share/man).  A non-editable install puts them there itself
# (setup.cfg's data_files); the editable one above does not.
MANPAGES := $(wildcard docs/man/*.[0-9])
VENV_MANPAGES := $(foreach page,$(MANPAGES),$(VENV)/share/man/man$(subst .,,$(suffix $(page)))/$(notdir $(page)))

$(VENV)/share/man/man8/%: docs/man/% | $(STAMP)
	install -D -m 644 $< $@
$(VENV)/share/man/man5/%: docs/man/% | $(STAMP)
	install -D -m 644 $< $@

venv: $(STAMP) $(VENV_MANPAGES)

run: venv
	$(BIN)/superd run -c conf/ --state-dir ./state

test: venv
	$(BIN)/python -m pytest -p randomly --randomly-seed=$(SEED) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Sphinx, warnings as errors.  The man pages are written into docs/man/, which
# is committed: tests/docs/test_manpages.py fails when they differ from what
# the sources build, and `make venv` installs them.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html -d build/docs/doctrees-html docs build/docs/html
	$(BIN)/sphinx-build -W --keep-going -q -b man -d build/docs/doctrees-man docs docs/man

bench: $(STAMP)
	@if [ -x bench/run ]; then PATH="$(CURDIR)/$(BIN):$$PATH" bench/run; \
	else echo "bench/run is not there yet" >&2; exit 1; fi

# setup.cfg pins Twisted to the release series the tests passed with; this
# runs the unit tests in a throwaway virtualenv with the newest release and
# prints what broke.  See .ci/newest-twisted.
newest-twisted:
	PYTHON=$(PYTHON) bash .ci/newest-twisted

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis state
	rm -f twisted/plugins/dropin.cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

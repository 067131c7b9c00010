# The two commands of the README: `make demo` and `make test`. Both set everything up on a fresh
# machine: the .venv (if missing), the package with its test extras, and Debian's chromium.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
LOGDIR ?= logs/demo
DEMO_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-quick chromium screenshot clean

$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.installed

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

demo: install
	$(PY) -m tb_viz_plugin.demo --logdir $(LOGDIR) $(DEMO_ARGS)

# The whole suite plus the package's docstring examples (pytest.ini: testpaths, --doctest-modules).
test: install chromium
	$(PY) -m pytest tests tb_viz_plugin

# The quick part: everything but the tests marked slow (DDP, the trained demo, peer libraries).
test-quick: install chromium
	$(PY) -m pytest -m "not slow" tests tb_viz_plugin

# Re-take the README's screenshot (docs/screenshot.png) from two fresh demo runs.
screenshot: install chromium
	rm -rf logs/screenshot
	$(PY) -m tb_viz_plugin.demo --logdir logs/screenshot --no-serve --seed 0
	$(PY) -m tb_viz_plugin.demo --logdir logs/screenshot --no-serve --seed 1
	$(PY) -m tests.screenshot logs/screenshot docs/screenshot.png --height 1100

clean:
	rm -rf build dist *.egg-info logs

# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   -- create .venv, install, convert seeded random-weight AMC models, print tables
#   make test   -- create .venv, install with test extras, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing amc-tf and its test extras into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -q -e '.[test]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m amc_tf.demo --out demo-out --force

test: $(STAMP)
	@command -v adb >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq adb >/dev/null; } || echo "note: no adb (apt-get install adb): the real-adb tests will be skipped"
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/perf/perf_convert.py
	$(PY) benchmarks/perf/perf_convert_vs_litert_torch.py
	$(PY) benchmarks/perf/perf_runner_overhead.py
	$(PY) benchmarks/perf/perf_onnx.py
	$(PY) benchmarks/perf/perf_quantize.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info

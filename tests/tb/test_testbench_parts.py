"""The host-side parts of the testbench kit: udp_frames, the file checks of run_testbench, the
lazy ``sim.tb`` namespace (no simulator needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from sim.cli.main import main
from sim.tb.testbench import TestbenchError, check_testbench_file
from sim.tb.traffic import udp_frames


def test_udp_frames():
    frames = udp_frames(5, size=100, sport=4000, dport=53)
    assert [len(f) for f in frames] == [100] * 5
    assert len(set(frames)) == 5
    for k, frame in enumerate(frames):
        pkt = Ether(frame)
        assert pkt[IP].len == 86 and pkt[UDP].len == 66
        assert (pkt[UDP].sport, pkt[UDP].dport) == (4000 + k, 53)
        assert UDP(bytes(pkt[UDP])).chksum == pkt[UDP].chksum
    assert udp_frames(5, size=100, sport=4000, dport=53) == frames      # seeded
    assert udp_frames(0) == [] and len(udp_frames(1, size=42)[0]) == 42


@pytest.mark.parametrize("args,match", [
    ((-1,), "count must be a non-negative integer, not -1"),
    ((1, 41), "size must be an integer in 42..9216 bytes, not 41"),
    ((1, 9217), "size must be an integer in 42..9216 bytes, not 9217"),
])
def test_udp_frames_arguments(args, match):
    with pytest.raises(ValueError, match=f"^{match}$"):
        udp_frames(*args)


def test_udp_frames_source_ports_must_fit():
    assert len(udp_frames(1, sport=65535)) == 1
    with pytest.raises(ValueError, match=r"^source ports 65535..65536 do not fit in 0..65535$"):
        udp_frames(2, sport=65535)


def test_testbench_file_checks(tmp_path):
    good = tmp_path / "my_bench.py"
    good.write_text("import cocotb\n")
    assert check_testbench_file(good) == (good.resolve(), "my_bench")
    cases = {
        tmp_path / "missing.py": f"{tmp_path / 'missing.py'}: cannot read testbench (No such file or directory)",
        tmp_path / "x.txt": f"{tmp_path / 'x.txt'}: a testbench is a Python file ending in .py",
        tmp_path / "bad.py": f"{tmp_path / 'bad.py'}:3:9: Python syntax error: invalid syntax",
        tmp_path / "my-bench.py": f"{tmp_path / 'my-bench.py'}: 'my-bench' is not a valid Python module name",
        tmp_path / "scapy.py": f"{tmp_path / 'scapy.py'}: module name 'scapy' is already taken by",
    }
    (tmp_path / "x.txt").write_text("")
    (tmp_path / "bad.py").write_text("import cocotb\n\nx = (1 +)\n")
    (tmp_path / "my-bench.py").write_text("")
    (tmp_path / "scapy.py").write_text("")
    for path, message in cases.items():
        with pytest.raises(TestbenchError) as info:
            check_testbench_file(path)
        assert str(info.value).startswith(message), str(info.value)


def test_sim_tb_namespace_is_lazy():
    code = ("import sys, sim.tb, sim.tb.traffic; assert 'cocotb' not in sys.modules; "
            "from sim.tb import TB, udp_frames, run_testbench; assert 'cocotb' in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
    with pytest.raises(AttributeError, match="module 'sim.tb' has no attribute 'nope'"):
        import sim.tb
        sim.tb.nope  # noqa: B018


def test_secnic_testbench_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bench.py"
    bad.write_text("import cocotb\nasync def t(dut)\n")
    assert main(["testbench", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"secnic testbench: error: {bad}:2:17: Python syntax error: expected ':'\n"
    bad.write_text("import cocotb\n")
    conf = tmp_path / "nic.toml"
    conf.write_text("[nic]\ndata_width = 65\n")
    assert main(["testbench", str(bad), "--config", str(conf)]) == 2
    assert "data_width must be one of (64, 128, 256, 512), not 65" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()

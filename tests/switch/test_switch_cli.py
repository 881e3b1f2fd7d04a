"""`secnic run` with a switch: profiles by name, nic.toml [switch] tables, several --in ports,
recorder.jsonl, and mistakes that exit 2 naming the key."""

from __future__ import annotations

import json

import pytest

from sim.cli.main import main
from sim.run.pcapio import read_pcap, write_pcap

A, B, C = (bytes.fromhex(h) for h in ("02000000000a", "02000000000b", "02000000000c"))


def _eth(dst: bytes, src: bytes, n: int = 46) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(n)


def _pcap(path, frames):
    write_pcap(path, [(f, 1000 * i) for i, f in enumerate(frames)])
    return path


def test_default_is_the_switch_profile(tmp_path):
    """vm1 broadcasts (flooded to every port of VLAN 1 but the monitor), vm2 answers (to vm1
    only, its address is learned), phy0 sends a tagged frame for VLAN 1 (native: it leaves the
    access ports untagged)."""
    vm1 = _pcap(tmp_path / "vm1.pcap", [_eth(b"\xff" * 6, A)])
    vm2 = _pcap(tmp_path / "vm2.pcap", [_eth(A, B)])
    tagged = A + C + b"\x81\x00\x00\x01" + b"\x88\xb5" + bytes(46)
    phy0 = _pcap(tmp_path / "phy0.pcap", [tagged])
    out = tmp_path / "out"
    assert main(["run", "--in", f"vm1={vm1}", "--in", f"vm2={vm2}", "--in", f"phy0={phy0}", "--pace", "pcap",
                 "--out", str(out)]) == 0
    egress = {p.stem: [f.data for f in read_pcap(p)] for p in (out / "egress").glob("*.pcap")}
    assert sorted(egress) == ["host", "mon", "phy0", "vm1", "vm2", "vm3", "vm4"]
    for port in ("phy0", "vm2", "vm3", "vm4", "host"):
        assert _eth(b"\xff" * 6, A) in egress[port], port
    assert egress["mon"] == []
    # vm2's answer and phy0's frame (untagged on the access port), both learned A on vm1
    assert sorted(egress["vm1"]) == sorted([_eth(A, B), A + C + b"\x88\xb5" + bytes(46)])
    counters = json.loads((out / "counters.json").read_text())
    assert counters["switch"]["learned"] == 3
    assert counters["ports"]["vm1"]["switch"]["drop_tagged_on_access"] == 0
    assert not (out / "recorder.jsonl").exists()
    assert json.loads((out / "run.json").read_text())["recorder_frozen_by"] is None


def test_bump_in_the_wire_profile(tmp_path):
    pcap = _pcap(tmp_path / "in.pcap", [_eth(A, B)])
    out = tmp_path / "out"
    assert main(["run", "--config", "bump-in-the-wire", "--in", f"phy0={pcap}", "--out", str(out)]) == 0
    assert sorted(p.stem for p in (out / "egress").glob("*.pcap")) == ["phy0", "vm1"]
    assert [f.data for f in read_pcap(out / "egress" / "vm1.pcap")] == [_eth(A, B)]


def test_nic_toml_with_a_storm_writes_the_recorder(tmp_path):
    """A broadcast storm limit on vm1 drops the third broadcast; the flight recorder froze with it."""
    toml = tmp_path / "nic.toml"
    toml.write_text('[switch.ports]\nphy0 = { mode = "trunk", native = 1 }\nvm1 = { vlan = 1 }\n'
                    "[switch.storm.vm1]\nbroadcast = { mbps = 1, burst = 128 }\n")
    pcap = _pcap(tmp_path / "in.pcap", [_eth(b"\xff" * 6, A)] * 3)
    out = tmp_path / "out"
    assert main(["run", "--config", str(toml), "--in", f"vm1={pcap}", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "recorder.jsonl").read_text().splitlines()]
    assert lines[0] == {"frozen_by": "storm", "port": "vm1", "records": 3}
    assert [r["drop"] for r in lines[1:]] == [None, None, "storm_broadcast"]
    assert json.loads((out / "run.json").read_text())["recorder_frozen_by"] == "storm"


@pytest.mark.parametrize("text, key", [
    ("[switch.ports]\nvm1 = { vlan = 5000 }\n", "switch.ports.vm1.vlan"),
    ("[switch.ports]\nvm1 = {}\nvm2 = {}\n[switch.table]\nport_limit = { vm3 = 4 }\n", "switch.table.port_limit.vm3"),
    ("[switch.ports]\nvm1 = {}\nvm2 = {}\n[switch.table]\nport_limit = -1\n", "switch.table.port_limit"),
    ("[nic]\nports = ['a', 'b']\n[switch.ports]\nvm1 = {}\nvm2 = {}\n", "nic.ports"),
])
def test_bad_switch_config_exits_2_naming_the_key(tmp_path, capsys, text, key):
    toml = tmp_path / "nic.toml"
    toml.write_text(text)
    pcap = _pcap(tmp_path / "in.pcap", [_eth(A, B)])
    assert main(["run", "--config", str(toml), "--in", f"vm1={pcap}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert key in err and "nic.toml" in err
    assert not (tmp_path / "out").exists()


def test_unknown_profile_exits_2(tmp_path, capsys):
    pcap = _pcap(tmp_path / "in.pcap", [_eth(A, B)])
    assert main(["run", "--config", "nope", "--in", f"vm1={pcap}", "--out", str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err


def test_jobs_refused_for_a_switch(tmp_path, capsys):
    pcap = _pcap(tmp_path / "in.pcap", [_eth(A, B)])
    assert main(["run", "--engine", "verilator", "--jobs", "2", "--in", f"vm1={pcap}",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--jobs" in capsys.readouterr().err

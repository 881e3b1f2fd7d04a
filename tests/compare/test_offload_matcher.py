"""The offloaded path's punts come from the NIC's payload matcher (docs/compare.md, "The IDS runs in
the NIC"): the IDS hops' content rules, scoped per VM, are programmed into the matcher, and a frame
goes to the host exactly when its record says ``match_punt``; the punt rate and the host's cost
follow from those frames. On the golden model (``--engine model``); the bulk-mode gateware gives
the same records (test_compare's slow cross-check).

The traffic is a pcap made here with scapy: TCP frames to port 80 and 22, a quarter of them with
``/bin/sh`` planted in random payload. The expected punts are the frames whose payload (scapy's
dissection) holds the literal, found with a plain byte search, not with the matcher's model; the
expected alerts are those of them to port 80 (the rule's header), each once: both VMs' chains hold
the rule, whose destination is ``any``, and each chain's copy is narrowed to its own VM's network.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import REPO_ROOT
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from small_scenario import scenario_toml

from sim.cli.main import main

LITERAL = b"/bin/sh"
RULES = """\
drop tcp any any -> $HOME_NET 23 (msg:"telnet"; sid:1; rev:1;)
alert tcp any any -> any 80 (msg:"shell in URI"; content:"/bin/sh"; sid:2; rev:1;)
"""

def scenario_text(pcap: Path, rules: Path) -> str:
    return scenario_toml("matcher", {"kind": "pcap", "pcap": pcap, "frames": 200, "flows": 8, "east_west": 0},
                         {"vm1": (rules, ["firewall", "ids"]), "vm2": (rules, ["ids"])})


def _pcap(path, n=50, seed=3):
    """``n`` TCP frames to 10.1.0.5 or 10.2.0.5, port 80 or 22, a quarter with the literal planted."""
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        payload = bytearray(rng.randbytes(rng.choice((20, 300, 1200))))
        if i % 8 in (1, 2):
            at = rng.randrange(len(payload) - len(LITERAL))
            payload[at:at + len(LITERAL)] = LITERAL
        dst = f"10.{1 + i % 2}.0.5"
        dport = 80 if i % 3 else 22
        frames.append(Ether() / IP(src="198.18.0.9", dst=dst) / TCP(sport=40000 + i, dport=dport, flags="PA")
                      / Raw(bytes(payload)))
    wrpcap(str(path), frames)


def _holds_literal(data: bytes) -> bool:
    pkt = Ether(data)
    return Raw in pkt and LITERAL in bytes(pkt[Raw])


def _scenario(tmp_path):
    rules = tmp_path / "ids.rules"
    rules.write_text(RULES)
    pcap = tmp_path / "mix.pcap"
    _pcap(pcap)
    path = tmp_path / "matcher.toml"
    path.write_text(scenario_text(pcap, rules))
    return path


def test_punts_are_the_frames_whose_record_says_match_punt(tmp_path):
    from sim.compare.sweep import Context, _load, _nic
    from sim.compare.traffic import arrivals
    scenario = _scenario(tmp_path)
    ctx = Context(str(scenario), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    _, _, frames, _ = _load(ctx)
    planted = {i for i, f in enumerate(frames) if _holds_literal(f.data)}
    assert 20 < len(planted) < len(frames) // 2, "part of the traffic must hit, or nothing is checked"

    nic = _nic(ctx)
    assert nic.acl.matcher is not None and nic.config.security.matcher is not None
    nr = nic.run(frames, arrivals(frames, 0.25, 1))
    by_record = {i for i, r in enumerate(nr.records) if r and r["match"] and r["match"]["punt"]}
    assert set(nr.punted) == by_record == planted
    # The host path of the same run inspected exactly those frames.
    assert nr.host_path["punted"] == nr.host_path["inspected"] == len(planted)
    # Both chains hold the rule (destination any), each copy narrowed to its VM: a frame alerts once.
    alerting = {i for i, r in enumerate(nr.records) if r and r["sids"]}
    expected = {i for i in planted if Ether(frames[i].data)[TCP].dport == 80}
    assert alerting == expected and all(nr.records[i]["sids"] == [2] for i in alerting)
    assert {Ether(frames[i].data)[IP].dst for i in expected} == {"10.1.0.5", "10.2.0.5"}
    assert nr.host_path["alerts"] == len(expected)
    # The NIC forwards a punted frame all the same (IDS): every frame leaves by its VM's port.
    assert all(nr.records[i]["egress"] for i in planted)
    assert "punts: the NIC's records (match_punt: " in nr.basis and "rule split" not in nr.basis

    out = tmp_path / "out"
    assert main(["compare", str(scenario), "--out", str(out), "--engine", "model", "--scheduler", "none"]) == 0
    rep = json.loads((out / "report.json").read_text())
    for point in rep["sweep"]["offload"]:
        assert point["punts"] == len(planted)
        assert point["punt_rate"] == round(len(planted) / len(frames), 5)
        assert point["cores_used"] > 0 and point["punt_latency_p99_ns"] > 0
    assert f"match_punt: {len(planted)} frames here" in rep["offload_basis"]


def test_no_content_rules_no_punts(tmp_path):
    """The same traffic with the content rule taken out: nothing goes to the host, and the host's
    cost on the offloaded path is zero."""
    from sim.compare.sweep import Context, _load, _nic
    from sim.compare.traffic import arrivals
    scenario = _scenario(tmp_path)
    (tmp_path / "ids.rules").write_text(RULES.splitlines()[0] + "\n")
    ctx = Context(str(scenario), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    _, _, frames, _ = _load(ctx)
    nic = _nic(ctx)
    assert nic.acl.matcher is None
    nr = nic.run(frames, arrivals(frames, 0.25, 1))
    assert nr.punted == [] and "IDS: none" in nr.basis


def test_planting_in_a_pcap_scenario_is_refused(tmp_path, capsys):
    """A replayed pcap keeps its own frames: asking to plant hostile frames in it exits 2 naming the key."""
    scenario = _scenario(tmp_path)
    scenario.write_text(scenario.read_text().replace('kind = "pcap"', 'kind = "pcap"\nattack_share = 0.02'))
    out = tmp_path / "out"
    assert main(["compare", str(scenario), "--out", str(out), "--engine", "model", "--scheduler", "none"]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}: traffic.attack_share: plants hostile frames in synthetic traffic only" in err
    assert not out.exists()

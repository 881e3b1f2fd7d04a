"""Hostile frames planted in the synthetic traffic meet the security functions on both paths
(docs/compare.md, "Hostile traffic").

A small scenario (two VMs, firewall + IDS each, 5 % attacks and 5 % payload hits in 600 frames)
with its own rules. What each planted frame is, is checked from its bytes with scapy's dissection
against the rule text (the drop rules' ports and blocklisted net, the content rules' ports and
literals, case-insensitively for ``nocase``), not with the rule compiler or the matcher. Then: the
software firewall VMs and the NIC's ACL drop exactly the attacks; the software IDS (Hyperscan)
and the NIC (matcher punt + host path) alert on exactly the payload frames, each with its own rule;
the NIC punts exactly those frames; the counts in the report equal what was planted. The NIC is the
golden model (the bulk-mode gateware gives the same records: test_compare's slow cross-check).
"""

from __future__ import annotations

import ipaddress

from conftest import REPO_ROOT
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from small_scenario import scenario_toml

RULES = """\
drop tcp any any -> $HOME_NET 23 (msg:"telnet"; sid:1; rev:1;)
drop ip 192.0.2.0/24 any -> $HOME_NET any (msg:"blocklisted"; sid:2; rev:1;)
alert tcp any any -> $HOME_NET 443 (msg:"tls"; sid:3; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"traversal"; content:"../../"; sid:11; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"sqli"; content:"UNION SELECT"; nocase; sid:12; rev:1;)
alert udp any any -> $HOME_NET 53 (msg:"dns marker"; content:"|00 10 00 01|"; sid:13; rev:1;)
alert tcp any any -> $HOME_NET 3306 (msg:"mysql root"; content:"root"; depth:64; sid:14; rev:1;)
"""
#: What each content rule needs, read from the rule text above: (protocol, port, literal, nocase).
CONTENT = {11: (TCP, 80, b"../../", False), 12: (TCP, 80, b"UNION SELECT", True),
           13: (UDP, 53, b"\x00\x10\x00\x01", False), 14: (TCP, 3306, b"root", False)}
BLOCKLIST = ipaddress.ip_network("192.0.2.0/24")


def _scenario(tmp_path):
    rules = tmp_path / "hostile.rules"
    rules.write_text(RULES)
    path = tmp_path / "hostile.toml"
    path.write_text(scenario_toml("hostile", {"frames": 600, "flows": 48, "east_west": 0.5, "seed": 7,
                                              "attack_share": 0.05, "payload_hit_share": 0.05},
                                  {"vm1": (rules, ["firewall", "ids"]), "vm2": (rules, ["firewall", "ids"])},
                                  gbps=(0.1, 0.25)))
    return path


def _is_attack(data: bytes) -> bool:
    """Telnet to the VM, or anything from the blocklisted net (the drop rules' headers)."""
    pkt = Ether(data)
    return IP in pkt and ((TCP in pkt and pkt[TCP].dport == 23) or ipaddress.ip_address(pkt[IP].src) in BLOCKLIST)


def _holds(data: bytes, sid: int) -> bool:
    """The frame goes to the rule's port and its payload (scapy's) holds the rule's literal."""
    layer, port, literal, nocase = CONTENT[sid]
    pkt = Ether(data)
    if layer not in pkt or pkt[layer].dport != port:
        return False
    payload = bytes(pkt[layer].payload)
    return literal.lower() in payload.lower() if nocase else literal in payload


def test_planted_frames_meet_the_firewall_and_the_ids_on_both_paths(tmp_path):
    from sim.compare.sweep import Context, _firewalls, _load, _nic, _software_alerts, run_point
    from sim.compare.traffic import arrivals
    ctx = Context(str(_scenario(tmp_path)), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    _, _, frames, _ = _load(ctx)
    attacks = {i for i, f in enumerate(frames) if f.planted and f.planted.kind == "attack"}
    payloads = {i: f.planted.sid for i, f in enumerate(frames) if f.planted and f.planted.kind == "payload"}
    assert len(attacks) == len(payloads) == 30

    # The planted frames are what they claim, read from their bytes; no other frame is.
    assert {i for i, f in enumerate(frames) if _is_attack(f.data)} == attacks
    assert {frames[i].planted.sid for i in attacks} == {1, 2}
    assert all(_holds(frames[i].data, sid) for i, sid in payloads.items())
    assert set(payloads.values()) == set(CONTENT)
    assert not any(_holds(f.data, sid) for i, f in enumerate(frames) if i not in payloads for sid in CONTENT)
    # Real-looking carriers: an HTTP request line, a DNS query, the case of a nocase literal varied.
    by_sid = {sid: [frames[i].data for i, s in payloads.items() if s == sid] for sid in CONTENT}
    assert all(Raw in Ether(d) and bytes(Ether(d)[Raw]).startswith(b"GET /") for d in by_sid[11] + by_sid[12])
    assert all(DNS in Ether(d) and Ether(d)[DNS].qd is not None for d in by_sid[13])
    assert any(b"UNION SELECT" not in d for d in by_sid[12])

    # Dropped by both firewalls: the software one (its verdicts) and the NIC's ACL.
    assert {i for i, v in enumerate(_firewalls(ctx)[1]) if v == "drop"} == attacks
    nr = _nic(ctx).run(frames, arrivals(frames, 0.1, 1))
    assert set(nr.acl_dropped) == attacks
    # Alerted by both IDSes, each frame by its own rule only: Hyperscan in the software IDS VM; in the
    # NIC, the matcher punts exactly those frames and the host path verifies them.
    soft = _software_alerts(ctx)
    assert {i: s for i, s in enumerate(soft) if s} == {i: (sid,) for i, sid in payloads.items()}
    assert set(nr.punted) == set(payloads)
    content = set(CONTENT)
    assert {i: tuple(set(r["sids"]) & content) for i, r in enumerate(nr.records)
            if r and set(r["sids"]) & content} == {i: (sid,) for i, sid in payloads.items()}

    # The report's counts are what was planted, and the two paths deliver the same frames.
    sw = run_point(ctx, {"task": "software", "gbps": 0.1})
    off = run_point(ctx, {"task": "offload", "gbps": 0.1})
    for p in (sw, off):
        assert p["planted"] == {"attack": 30, "attack_dropped": 30, "payload": 30, "payload_alerted": 30}
        assert p["acl_drops"] == {"acl_drop": 30} and p["ids_alerts"] == 30
        assert p["drop_rate"] < 1e-3      # (the NIC's last frame leaves after the last arrival)
    assert sw["delivered_by_vm"] == off["delivered_by_vm"]
    assert sw["ids_alerts_by_sid"] == off["ids_alerts_by_sid"]
    assert off["punts"] == 30 and off["punt_rate"] == 0.05 and off["security_cores"] > 0


def test_no_planting_no_hits(tmp_path):
    """With both shares 0 the synthetic traffic meets neither a drop rule nor a literal: nothing to
    drop, punt or alert on (what the comparison measured before planting)."""
    from sim.compare.sweep import Context, run_point
    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace("attack_share = 0.05", "attack_share = 0")
                    .replace("payload_hit_share = 0.05", "payload_hit_share = 0"))
    ctx = Context(str(path), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    off = run_point(ctx, {"task": "offload", "gbps": 0.25})
    assert off["planted"] == {"attack": 0, "attack_dropped": 0, "payload": 0, "payload_alerted": 0}
    assert off["acl_drops"] == {} and off["punts"] == 0 and off["ids_alerts"] == 0

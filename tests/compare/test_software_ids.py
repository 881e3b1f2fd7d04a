"""The software IDS VM's alerts (sim/compare/ids.py: Hyperscan over the payload, then each content's
position and the rule's header), against payloads written by hand for each modifier of the rule
text: the expected sids are read from the rules, not computed by the code under test."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from small_scenario import scenario_toml

RULES = """\
alert tcp any any -> $HOME_NET 80 (msg:"depth"; content:"root"; depth:8; sid:1; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"offset"; content:"EVIL"; offset:4; sid:2; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"relative"; content:"USER"; content:"PASS"; distance:2; within:10; sid:3; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"nocase"; content:"select"; nocase; sid:4; rev:1;)
alert udp any any -> $HOME_NET 53 (msg:"binary"; content:"|00 10 00 01|"; sid:5; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"negated"; content:"GET"; content:!"Host"; sid:6; rev:1;)
"""

CASES = [
    (TCP, 80, b"xx root and more", {1}),               # "root" ends at byte 7, inside depth 8
    (TCP, 80, b"xxxxxx root", set()),                  # ends at 11: beyond depth 8
    (TCP, 80, b"abcdEVIL", {2}),                       # starts at 4 = offset
    (TCP, 80, b"abEVIL", set()),                       # starts at 2 < offset 4
    (TCP, 80, b"USER  PASS", {3}),                     # PASS 2 bytes after USER, ends 6 after it
    (TCP, 80, b"USERPASS", set()),                     # distance 2 not met
    (TCP, 80, b"USER" + b"." * 8 + b"PASS", set()),    # ends 12 after USER: beyond within 10
    (TCP, 80, b"id=1 union SeLeCt 1", {4}),
    (TCP, 8080, b"id=1 union SeLeCt 1", set()),        # the rule's header: port 80 only
    (UDP, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01t\x00\x00\x10\x00\x01", {5}),
    (TCP, 80, b"GET / HTTP/1.0\r\n\r\n", {6}),
    (TCP, 80, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", set()),   # the negated content is there
]


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    from sim.compare.firewall import chain_ids
    from sim.compare.ids import SoftwareIds
    from sim.compare.scenario import load_scenario
    tmp = tmp_path_factory.mktemp("ids")
    (tmp / "ids.rules").write_text(RULES)
    path = tmp / "ids.toml"
    path.write_text(scenario_toml("ids", {"frames": 100, "flows": 4, "attack_share": 0, "payload_hit_share": 0},
                                  {"vm1": (tmp / "ids.rules", ["ids"])}, vms=("vm1",)))
    scenario = load_scenario(path)
    assert str(scenario.calibration).startswith(str(REPO_ROOT))
    return SoftwareIds(chain_ids(scenario)), scenario.nic_config()


@pytest.mark.parametrize("layer, port, payload, sids", CASES)
def test_alerts_follow_the_rule_text(ids, layer, port, payload, sids):
    from sim.compare.traffic import Frame
    software_ids, config = ids
    data = bytes(Ether() / IP(src="198.18.0.1", dst="10.1.0.7") / layer(sport=40000, dport=port) / payload)
    assert set(software_ids.alerts([Frame(data, "vm1", None, 0)], config)[0]) == sids
    # The same frame to another VM's address is outside vm1's scoped rules.
    other = bytes(Ether() / IP(src="198.18.0.1", dst="10.2.0.7") / layer(sport=40000, dport=port) / payload)
    assert software_ids.alerts([Frame(other, "vm1", None, 0)], config)[0] == ()

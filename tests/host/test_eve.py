"""host_driver.eve: alert events as Suricata writes them, held to Suricata's own EVE schema and to
the example in Suricata's documentation."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from host_driver.eve import ACTION_BLOCKED, EveWriter, alert_event, eve_timestamp, flow_id
from host_driver.model.nic import parse_frame
from host_driver.rules import parse_rules, read_classifications

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency (pip install -e .[dev])")

MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def _meta(packet) -> dict:
    return parse_frame(bytes(packet), physical=False, header_window=256, max_frame=9216)


def _rule(text: str):
    (rule,) = parse_rules(text, classifications={"bad-unknown": 2, "attempted-recon": 2})
    return rule


@pytest.fixture
def schema(shared_data):
    path = shared_data / "suricata-eve-schema" / "schema.json"
    if not path.is_file():
        pytest.skip(f"Suricata's EVE schema not found at {path}")
    doc = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(doc)
    validator.check_schema(doc)
    return validator(doc, format_checker=validator.FORMAT_CHECKER)


@pytest.fixture
def classifications(shared_data):
    return read_classifications(shared_data / "rules" / "classification.config")


PACKETS = {
    "tcp": Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="PA") / Raw(b"x"),
    "udp_vlan": Ether(**MAC) / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="8.8.8.8") / UDP(sport=5353, dport=53),
    "qinq": Ether(**MAC) / Dot1Q(vlan=2, type=0x8100) / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="10.0.0.9") / UDP(),
    "icmp": Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0),
    "icmpv6": Ether(**MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(),
    "tcp6": Ether(**MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000, dport=443),
    "gre": Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / Raw(bytes(8)),
}


def test_every_event_is_valid_against_suricatas_schema(schema, classifications, tmp_path):
    rule = _rule('alert ip any any -> any any (msg:"any ip"; classtype:attempted-recon; '
                 'metadata:policy balanced, created_at 2026_12_07; sid:10; rev:3;)')
    path = tmp_path / "eve.json"
    with EveWriter(path) as eve:
        for n, packet in enumerate(PACKETS.values(), 1):
            for action in ("allowed", ACTION_BLOCKED):
                eve.write(alert_event(rule, _meta(packet), timestamp=1_765_000_000.25 + n, action=action,
                                      classifications=classifications, in_iface="phy0", pcap_cnt=n,
                                      pkt_src="wire/pcap"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * len(PACKETS) == eve.count
    for line in lines:
        errors = sorted(schema.iter_errors(json.loads(line)), key=str)
        assert not errors, f"{line}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_fields_by_protocol():
    rule = _rule('alert ip any any -> any any (msg:"m"; sid:1;)')
    tcp = alert_event(rule, _meta(PACKETS["tcp"]), timestamp=0)
    assert (tcp["src_ip"], tcp["src_port"], tcp["dest_ip"], tcp["dest_port"], tcp["proto"]) == \
        ("10.0.0.1", 1234, "10.0.0.2", 80, "TCP")
    assert "vlan" not in tcp and "icmp_type" not in tcp
    assert alert_event(rule, _meta(PACKETS["udp_vlan"]), timestamp=0)["vlan"] == [7]
    assert alert_event(rule, _meta(PACKETS["qinq"]), timestamp=0)["vlan"] == [2, 7]
    icmp = alert_event(rule, _meta(PACKETS["icmp"]), timestamp=0)
    assert (icmp["proto"], icmp["icmp_type"], icmp["icmp_code"]) == ("ICMP", 8, 0) and "src_port" not in icmp
    icmp6 = alert_event(rule, _meta(PACKETS["icmpv6"]), timestamp=0)
    assert (icmp6["proto"], icmp6["icmp_type"], icmp6["src_ip"]) == ("IPv6-ICMP", 128, "2001:db8::1")
    gre = alert_event(rule, _meta(PACKETS["gre"]), timestamp=0)
    assert gre["proto"] == "GRE" and "src_port" not in gre
    # Severity: the rule's priority (3 without priority or classtype, Suricata's default); no
    # category without a known classtype.
    assert tcp["alert"] == {"action": "allowed", "gid": 1, "signature_id": 1, "rev": 0, "signature": "m",
                            "severity": 3}


def test_suricata_documentation_example(classifications):
    """The alert in Suricata's "Eve JSON Format" page (docs.suricata.io, output/eve/eve-json-format):
    a rule of classtype bad-unknown, sid 2018358 rev 10, on 192.168.2.14:50096 -> 209.53.113.5:80
    over TCP gives these fields with these values (its HTTP-only fields aside)."""
    rule = _rule('alert tcp any any -> any 80 (msg:"ET HUNTING GENERIC SUSPICIOUS POST to Dotted Quad with Fake '
                 'Browser 1"; classtype:bad-unknown; sid:2018358; rev:10;)')
    packet = Ether(**MAC) / IP(src="192.168.2.14", dst="209.53.113.5") / TCP(sport=50096, dport=80)
    event = alert_event(rule, _meta(packet), timestamp=0, classifications=classifications, pcap_cnt=53381)
    documented = {"pcap_cnt": 53381, "event_type": "alert", "src_ip": "192.168.2.14", "src_port": 50096,
                  "dest_ip": "209.53.113.5", "dest_port": 80, "proto": "TCP",
                  "alert": {"action": "allowed", "gid": 1, "signature_id": 2018358, "rev": 10,
                            "signature": "ET HUNTING GENERIC SUSPICIOUS POST to Dotted Quad with Fake Browser 1",
                            "category": "Potentially Bad Traffic", "severity": 2}}
    assert {k: event[k] for k in documented} == documented
    assert set(event) == set(documented) | {"timestamp", "flow_id"}
    assert isinstance(event["flow_id"], int) and event["flow_id"] > 0


def test_flow_id_is_one_per_flow():
    a = _meta(Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80))
    b = _meta(Ether(**MAC) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1000, flags="SA"))
    other_port = _meta(Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1001, dport=80))
    other_vlan = _meta(Ether(**MAC) / Dot1Q(vlan=3) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80))
    assert flow_id(a) == flow_id(b)
    assert len({flow_id(a), flow_id(other_port), flow_id(other_vlan)}) == 3
    assert 0 < flow_id(a) < 1 << 51


def test_timestamp():
    assert eve_timestamp(0) == "1970-01-01T00:00:00.000000+0000"
    assert eve_timestamp(1_765_108_800.123456) == "2025-12-07T12:00:00.123456+0000"
    assert eve_timestamp(59.9999996) == "1970-01-01T00:01:00.000000+0000"


def test_action_and_non_ip_refused():
    rule = _rule('alert ip any any -> any any (msg:"m"; sid:1;)')
    with pytest.raises(ValueError, match="action must be"):
        alert_event(rule, _meta(PACKETS["tcp"]), timestamp=0, action="drop")
    with pytest.raises(ValueError, match="needs an IP packet"):
        alert_event(rule, _meta(Ether(**MAC, type=0x88B5) / Raw(bytes(50))), timestamp=0)


def test_writer_is_all_or_nothing(tmp_path):
    path = tmp_path / "eve.json"
    path.write_text("the user's file\n")
    with pytest.raises(RuntimeError), EveWriter(path) as eve:
        eve.write({"event_type": "alert"})
        raise RuntimeError("the run failed")
    assert path.read_text() == "the user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eve.json"]
    with EveWriter(path) as eve:
        eve.write({"event_type": "alert", "n": 1})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"event_type": "alert", "n": 1}]

"""The Suricata rule compiler (host_driver.rules): parsing, verdicts, classifier entries, errors.

Expected values are written by hand from Suricata's documented semantics (rule format, address
and port groups, flags/itype/ttl keywords, action order), not computed by the compiler's code.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from conftest import SHARED_DATA

from host_driver.rules import (
    ClassifierEntry,
    Range,
    RuleSyntaxError,
    compile_rules,
    load_classifications,
    load_vars,
    parse_address,
    parse_ports,
    parse_rules,
    range_to_prefixes,
    read_rules,
)

net = ipaddress.ip_network
V4_ANY, V6_ANY = net("0.0.0.0/0"), net("::/0")


def compile_text(text: str, capacity: int = 256, **kw):
    return compile_rules(parse_rules(text, "t.rules", **kw), capacity=capacity)


def only_rule(text: str, **kw):
    table = compile_text(text, **kw)
    assert len(table.rules) == 1
    return table.rules[0], table.entries


# --- header features ------------------------------------------------------------------------------

def test_tcp_header_gives_one_exact_entry():
    rule, entries = only_rule('pass tcp 10.0.0.0/8 1024: -> 192.168.1.0/24 80 (msg:"x"; sid:7; rev:2; gid:3;)')
    assert (rule.verdict, rule.reason) == ("offloaded", "")
    assert entries == [ClassifierEntry(
        action="pass", sid=7, gid=3, rev=2, priority=3, ethertype=0x0800, src=net("10.0.0.0/8"),
        dst=net("192.168.1.0/24"), ip_proto=Range(6, 6), sport=Range(1024, 65535), dport=Range(80, 80), line=1)]


def test_ipv6_cidr_and_udp_port_range():
    _, entries = only_rule("alert udp 2001:db8::/32 :1023 -> any [53,5353] (sid:1;)")
    assert [(e.ethertype, e.src, e.dst, e.ip_proto, e.sport, e.dport) for e in entries] == [
        (0x86DD, net("2001:db8::/32"), V6_ANY, Range(17, 17), Range(0, 1023), Range(53, 53)),
        (0x86DD, net("2001:db8::/32"), V6_ANY, Range(17, 17), Range(0, 1023), Range(5353, 5353)),
    ]


def test_ip_any_is_one_entry_per_family_with_every_field_any():
    _, entries = only_rule("drop ip any any -> any any (sid:1;)")
    assert [(e.ethertype, e.src, e.dst, e.ip_proto, e.sport, e.dport) for e in entries] == [
        (0x0800, V4_ANY, V4_ANY, None, None, None), (0x86DD, V6_ANY, V6_ANY, None, None, None)]


def test_icmp_is_icmpv4_and_icmpv6_and_icmpv6_only_58():
    _, entries = only_rule("alert icmp any any -> 10.0.0.1 any (sid:1;)")
    assert [(e.src, e.dst, e.ip_proto) for e in entries] == [
        (V4_ANY, net("10.0.0.1/32"), Range(1, 1)), (V4_ANY, net("10.0.0.1/32"), Range(58, 58))]
    _, entries = only_rule("alert icmpv6 any any -> any any (sid:1;)")
    assert [(e.ethertype, e.ip_proto) for e in entries] == [(0x0800, Range(58, 58)), (0x86DD, Range(58, 58))]


@pytest.mark.parametrize("proto,number", [("tcp-pkt", 6), ("udp-pkt", 17)])
def test_packet_protocols(proto, number):
    _, entries = only_rule(f"alert {proto} 1.1.1.1 any -> 2.2.2.2 any (sid:1;)")
    assert [e.ip_proto for e in entries] == [Range(number, number)]


def test_bidirectional_gives_both_directions():
    _, entries = only_rule("alert tcp 10.0.0.1 any <> 10.0.0.2 22 (sid:1;)")
    assert [(e.src, e.sport, e.dst, e.dport) for e in entries] == [
        (net("10.0.0.1/32"), None, net("10.0.0.2/32"), Range(22, 22)),
        (net("10.0.0.2/32"), Range(22, 22), net("10.0.0.1/32"), None)]


def test_source_and_destination_pair_only_within_a_family():
    _, entries = only_rule("alert ip [10.0.0.0/8,2001:db8::/32] any -> any any (sid:1;)")
    assert [(e.src, e.dst) for e in entries] == [(net("10.0.0.0/8"), V4_ANY), (net("2001:db8::/32"), V6_ANY)]
    rule, entries = only_rule("alert ip 10.0.0.1 any -> 2001:db8::1 any (sid:1;)")
    assert entries == [] and rule.verdict == "unsupported"
    assert rule.reason == "matches no packet: source and destination have no IP family in common"


# --- address and port expressions -------------------------------------------------------------------

@pytest.mark.parametrize("text,v4", [
    ("[10.0.0.0/8,!10.128.0.0/9]", ["10.0.0.0/9"]),
    ("1.2.3.4-1.2.3.9", ["1.2.3.4/30", "1.2.3.8/31"]),
    ("10.1.2.3/255.255.0.0", ["10.1.0.0/16"]),
    ("[1.0.0.0/8, [2.0.0.0/8, !2.0.0.0/9]]", ["1.0.0.0/8", "2.128.0.0/9"]),
    # A negated group is evaluated first and negated whole: 1.2/16 minus 1.2.3/24 is removed.
    ("[1.0.0.0/8,![1.2.0.0/16,!1.2.3.0/24]]", ["1.0.0.0/15", "1.2.3.0/24", "1.3.0.0/16", "1.4.0.0/14",
                                              "1.8.0.0/13", "1.16.0.0/12", "1.32.0.0/11", "1.64.0.0/10",
                                              "1.128.0.0/9"]),
])
def test_address_groups_and_negation(text, v4):
    got = parse_address(text)
    assert got.networks(4) == [net(n) for n in v4]
    assert got.networks(6) == []


def test_pure_negation_is_the_rest_of_that_family_only():
    got = parse_address("!0.0.0.0/1")
    assert got.networks(4) == [net("128.0.0.0/1")] and got.networks(6) == []
    got = parse_address("![0.0.0.0/1,::/1]")
    assert got.networks(4) == [net("128.0.0.0/1")] and got.networks(6) == [net("8000::/1")]


@pytest.mark.parametrize("text,ranges", [
    ("any", [(0, 65535)]), ("80", [(80, 80)]), ("1024:", [(1024, 65535)]), (":80", [(0, 80)]),
    ("!80", [(0, 79), (81, 65535)]), ("[80:100,!99]", [(80, 98), (100, 100)]),
    ("[1:80,![2,4]]", [(1, 1), (3, 3), (5, 80)]), ("[ 80 , 443 ]", [(80, 80), (443, 443)]),
])
def test_port_groups_ranges_and_negation(text, ranges):
    assert list(parse_ports(text).intervals) == ranges


def test_negated_port_set_becomes_its_complement_in_entries():
    _, entries = only_rule("alert tcp any ![0:1023,8080] -> 10.0.0.1 any (sid:1;)")
    assert [e.sport for e in entries] == [Range(1024, 8079), Range(8081, 65535)]


# --- variables --------------------------------------------------------------------------------------

def test_suricata_default_variables():
    rule, entries = only_rule("alert tcp $EXTERNAL_NET any -> $HOME_NET $HTTP_PORTS (sid:1;)")
    assert rule.dst.networks(4) == [net("10.0.0.0/8"), net("172.16.0.0/12"), net("192.168.0.0/16")]
    # !$HOME_NET: every IPv4 address outside the three private blocks, as 31 prefixes; no IPv6.
    ext = rule.src.networks(4)
    assert len(ext) == 31 and ext[:3] == [net("0.0.0.0/5"), net("8.0.0.0/7"), net("11.0.0.0/8")]
    assert ext[-1] == net("192.169.0.0/16") or net("224.0.0.0/3") in ext
    assert rule.src.networks(6) == []
    assert len(entries) == 31 * 3 and {e.dport for e in entries} == {Range(80, 80)}


def test_vars_file_overrides_defaults(tmp_path):
    path = tmp_path / "vars.toml"
    path.write_text('[address-groups]\nHOME_NET = "[192.0.2.0/24, 2001:db8::/32]"\n'
                    '[port-groups]\nHTTP_PORTS = "[80,8080]"\nSSH_PORTS = 2222\n')
    addr, ports = load_vars(path)
    assert (addr, ports) == ({"HOME_NET": "[192.0.2.0/24, 2001:db8::/32]"},
                             {"HTTP_PORTS": "[80,8080]", "SSH_PORTS": "2222"})
    _, entries = only_rule("alert tcp any any -> $HOME_NET [$HTTP_PORTS,$SSH_PORTS] (sid:1;)",
                           address_groups=addr, port_groups=ports)
    assert [(e.dst, e.dport) for e in entries] == [
        (net("192.0.2.0/24"), Range(80, 80)), (net("192.0.2.0/24"), Range(2222, 2222)),
        (net("192.0.2.0/24"), Range(8080, 8080)), (net("2001:db8::/32"), Range(80, 80)),
        (net("2001:db8::/32"), Range(2222, 2222)), (net("2001:db8::/32"), Range(8080, 8080))]


def test_vars_file_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "vars.toml"
    path.write_text('[address-groups]\nHOME_NET = "x" y\n')
    with pytest.raises(RuleSyntaxError) as exc:
        load_vars(path)
    assert str(exc.value) == (f"{path}:2:16: TOML syntax error: Expected newline or end of document "
                              "after a statement")
    path.write_text('[address-groups]\nHOME_NET = [1\n')
    with pytest.raises(RuleSyntaxError) as exc:
        load_vars(path)
    assert str(exc.value) == f"{path}:3:1: TOML syntax error: Unclosed array"
    path.write_text('[address-group]\nHOME_NET = "1.2.3.4"\n')
    with pytest.raises(RuleSyntaxError, match=r"unknown table or key 'address-group'"):
        load_vars(path)


@pytest.mark.parametrize("text,vars_,message", [
    ("alert ip $NOPE any -> any any (sid:1;)", {}, "10: source address: undefined variable $NOPE"),
    ("alert ip $A any -> any any (sid:1;)", {"A": "[1.1.1.1,$A]"},
     "10: source address: in variable $A = '[1.1.1.1,$A]': variable $A refers to itself ($A -> $A) "
     "(at its character 10)"),
    ("alert ip $A any -> any any (sid:1;)", {"A": "[1.1.1.1"},
     "10: source address: in variable $A = '[1.1.1.1': expected ',' or ']' closing the group opened at column 1, "
     "found the end (at its character 9)"),
])
def test_bad_variables_point_at_their_use(text, vars_, message):
    with pytest.raises(RuleSyntaxError) as exc:
        parse_rules(text, "v.rules", address_groups=vars_)
    assert str(exc.value).startswith("v.rules:1:" + message)


# --- options ----------------------------------------------------------------------------------------

def test_meta_options():
    text = ('alert tcp any any -> 10.0.0.1 any (msg:"hello \\; world"; sid:9; rev:4; gid:2; '
            'classtype:attempted-admin; metadata:created_at 2010_09_23, updated_at 2019_07_26; reference:url,x;)')
    rule, _ = only_rule(text, classifications={"attempted-admin": 1})
    assert (rule.msg, rule.sid, rule.rev, rule.gid, rule.classtype, rule.priority) == (
        "hello \\; world", 9, 4, 2, "attempted-admin", 1)
    assert rule.metadata == ["created_at 2010_09_23", "updated_at 2019_07_26"]


def test_explicit_priority_overrides_classtype():
    rule, entries = only_rule("alert ip any any -> 1.1.1.1 any (classtype:attempted-admin; priority:5; sid:1;)",
                              classifications={"attempted-admin": 1})
    assert rule.priority == 5 and {e.priority for e in entries} == {5}


def test_classification_config_file(shared_data):
    prios = load_classifications(shared_data / "rules" / "classification.config")
    assert prios["attempted-admin"] == 1 and prios["bad-unknown"] == 2 and prios["not-suspicious"] == 3


@pytest.mark.parametrize("option,ranges", [
    ("itype:8", [(8, 8)]), ("itype:>10", [(11, 255)]), ("itype:<=3", [(0, 3)]), ("itype:!0", [(1, 255)]),
    ("itype:10<>20", [(11, 19)]), ("itype:3-5", [(4, 4)]), ("itype:!3-5", [(0, 3), (5, 255)]),
    ("itype:0x0b", [(11, 11)]),
])
def test_itype_syntax(option, ranges):
    _, entries = only_rule(f"alert icmp any any -> 10.0.0.1 any ({option}; sid:1;)")
    assert sorted({(e.icmp_type.lo, e.icmp_type.hi) for e in entries}) == ranges


def test_icode_and_ttl_and_ip_proto():
    _, entries = only_rule("alert ip any any -> 10.0.0.1 any (icode:<2; ttl:>=250; sid:1;)")
    assert [(e.ip_proto, e.icmp_code, e.ttl) for e in entries] == [
        (Range(1, 1), Range(0, 1), Range(250, 255)), (Range(58, 58), Range(0, 1), Range(250, 255))]
    _, entries = only_rule("alert ip any any -> 10.0.0.1 any (ip_proto:!6; sid:1;)")
    assert [e.ip_proto for e in entries] == [Range(0, 5), Range(7, 255)]
    _, entries = only_rule("alert ip any any -> 10.0.0.1 any (ip_proto:gre; sid:1;)")
    assert [e.ip_proto for e in entries] == [Range(47, 47)]


def test_contradicting_options_match_nothing():
    rule, entries = only_rule("alert udp any any -> 10.0.0.1 any (flags:S; sid:1;)")
    assert entries == [] and rule.verdict == "unsupported"
    assert rule.reason == "matches no packet: protocol udp and flags (TCP only) leave no IP protocol"


def test_flow_goes_into_the_entry():
    _, entries = only_rule("alert tcp any any -> 10.0.0.1 80 (flow:established,to_server; sid:1;)")
    assert [(e.flow_established, e.flow_to_server) for e in entries] == [(True, True)]
    _, entries = only_rule("alert tcp any any -> 10.0.0.1 80 (flow:from_server; sid:1;)")
    assert [(e.flow_established, e.flow_to_server) for e in entries] == [(None, False)]
    _, entries = only_rule("alert tcp any any -> 10.0.0.1 80 (flow:stateless; sid:1;)")
    assert [(e.flow_established, e.flow_to_server) for e in entries] == [(None, None)]


def suricata_flags_match(packet: int, modifier: str, flags: int, ignored: int) -> bool:
    """detect-tcp-flags.c's FlagsMatch, written from Suricata's documentation of ``flags``."""
    if flags == 0 and packet:
        return modifier == "!"
    p = packet & ~ignored & 0xFF
    return {"": p == flags, "+": p & flags == flags, "*": p & flags != 0, "!": p & flags != flags}[modifier]


@pytest.mark.parametrize("option,modifier,flags,ignored", [
    ("S", "", 0x02, 0), ("SA", "", 0x12, 0), ("S,CE", "", 0x02, 0xC0), ("S,12", "", 0x02, 0xC0),
    ("+A", "", 0x10, 0), ("A+", "+", 0x10, 0), ("*SF", "*", 0x03, 0), ("!R", "!", 0x04, 0), ("!SA", "!", 0x12, 0),
    ("0", "", 0, 0), ("!0", "!", 0, 0), ("*FA,A", "*", 0x11, 0x10), ("+S,S", "+", 0x02, 0x02),
])
def test_flags_entries_match_exactly_suricatas_flags(option, modifier, flags, ignored):
    if option == "+A":       # Suricata takes the modifier before or after the flags
        modifier = "+"
    rule, entries = only_rule(f"alert tcp any any -> 10.0.0.1 any (flags:{option}; sid:1;)")
    ternary = [e.tcp_flags for e in entries]
    for packet in range(256):
        hit = any(packet & mask == value for value, mask in ternary)
        assert hit == suricata_flags_match(packet, modifier, flags, ignored), (option, packet)
    if not ternary:
        assert rule.verdict == "unsupported"


# --- verdicts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule_text,verdict,reason", [
    ('alert tcp any any -> any 80 (content:"GET"; nocase; depth:3; sid:1;)', "payload", "content"),
    ("alert udp any any -> any 53 (dsize:>512; sid:1;)", "payload", "dsize"),
    ('alert tcp any any -> any any (content:"x"; pcre:"/x+/"; sid:1;)', "host path", "pcre"),
    ('alert tcp any any -> any any (flow:established; content:"a"; http.uri; sid:1;)', "host path", "http.uri"),
    ("alert ip 1.2.3.4 any -> any any (threshold:type limit, track by_src, count 1, seconds 60; sid:1;)",
     "host path", "threshold"),
    ("alert tcp any any -> any any (flowbits:isset,x; sid:1;)", "host path", "flowbits"),
    ("alert tcp any any -> any any (flow:only_stream; sid:1;)", "host path", "flow:only_stream"),
    ("alert icmp any any -> any any (itype:&0x80=0x80; sid:1;)", "host path", "itype bitmask"),
    ('alert http any any -> any any (content:"x"; sid:1;)', "unsupported", "protocol http"),
    ("alert sctp any any -> any any (sid:1;)", "unsupported", "protocol sctp"),
])
def test_verdict_and_reason(rule_text, verdict, reason):
    rule, entries = only_rule(rule_text)
    assert (rule.verdict, rule.reason) == (verdict, reason)
    assert entries == []


# --- classifier order and capacity ------------------------------------------------------------------

def test_entries_in_suricata_action_order_then_priority_then_file_order():
    table = compile_text("\n".join([
        "alert ip any any -> 10.0.0.1 any (sid:1; priority:1;)",
        "rejectsrc ip any any -> 10.0.0.2 any (sid:2;)",
        "drop ip any any -> 10.0.0.3 any (sid:3; priority:4;)",
        "drop ip any any -> 10.0.0.4 any (sid:4; priority:2;)",
        "pass ip any any -> 10.0.0.5 any (sid:5; priority:9;)",
        "drop ip any any -> 10.0.0.6 any (sid:6; priority:2;)",
    ]))
    assert [(e.action, e.sid) for e in table.entries] == [
        ("pass", 5), ("drop", 4), ("drop", 6), ("drop", 3), ("reject", 2), ("alert", 1)]


def test_range_to_prefixes_worst_case_and_exactness():
    assert len(range_to_prefixes(1, 65534, 16)) == 2 * 16 - 2
    assert range_to_prefixes(0, 65535, 16) == [(0, 0)]
    assert range_to_prefixes(1024, 65535, 16) == [(1024, 6), (2048, 5), (4096, 4), (8192, 3), (16384, 2),
                                                  (32768, 1)]
    for lo in range(256):
        for hi in range(lo, 256):
            covered = []
            for value, length in range_to_prefixes(lo, hi, 8):
                size = 1 << (8 - length)
                assert value % size == 0
                covered += range(value, value + size)
            assert covered == list(range(lo, hi + 1))
            assert len(covered) and len(range_to_prefixes(lo, hi, 8)) <= 14


def test_capacity_counts_entries_and_ternary_entries():
    table = compile_text("alert tcp any [1:65534] -> 10.0.0.1 1024: (sid:1;)\n"
                         "alert tcp any any -> 10.0.0.2 !80 (sid:2;)\n")
    assert len(table.entries) == 1 + 2
    # [1:65534] is 30 prefixes, 1024: is 6; !80 is [0:79] (0/10, 64/12) and [81:65535] (81/16 ... 32768/1: 14).
    assert table.ternary_entries == 30 * 6 + (2 + 14)
    assert table.entries_by_sid == {(1, 1): 1, (1, 2): 2}
    assert table.ternary_by_sid == {(1, 1): 180, (1, 2): 16}


def test_rule_that_does_not_fit_goes_to_the_host_path():
    table = compile_text("alert tcp any any -> 10.0.0.1 !80 (sid:1;)\n"       # 2 entries
                         "drop tcp any any -> 10.0.0.2 [1,3,5] (sid:2;)\n"    # 3 entries, placed first
                         "alert tcp any any -> 10.0.0.3 any (sid:3;)\n", capacity=4)
    assert [(r.sid, r.verdict, r.reason) for r in table.rules] == [
        (1, "host path", "does not fit: needs 2 entries, 1 of 4 left"), (2, "offloaded", ""), (3, "offloaded", "")]
    assert [e.sid for e in table.entries] == [2, 2, 2, 3]


# --- syntax errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("line,message", [
    ("alrt tcp any any -> any any (sid:1;)", "1: unknown action 'alrt'"),
    ("alert tcp any any <- any any (sid:1;)", "19: bad direction '<-'"),
    ("alert tcp [1.2.3.4 any -> any any (sid:1;)", "11: '[' is never closed"),
    ("alert tcp 1.2.3.4] any -> any any (sid:1;)", "18: source address: unexpected ']' after the expression"),
    ("alert tcp [1.2.3.4,,5.6.7.8] any -> any any (sid:1;)", "20: source address: expected an item, found ','"),
    ("alert tcp 1.2.3.400 any -> any any (sid:1;)", "11: bad address '1.2.3.400'"),
    ("alert tcp any 70000 -> any any (sid:1;)", "15: port '70000' is out of range 0-65535"),
    ("alert tcp any 90:80 -> any any (sid:1;)", "15: port range '90:80' runs backwards"),
    ("alert tcp any any -> !any any (sid:1;)", "22: destination address: everything is negated"),
    ("alert tcp any any -> any (sid:1;)", "26: header ends early: expected the destination port"),
    ("alert tcp any any -> any any any (sid:1;)", "30: unexpected 'any' after the destination port"),
    ("alert tcp any any -> any any (msg:\"x\";)", "30: rule has no sid"),
    ("alert tcp any any -> any any (sid:12a;)", "35: sid must be a non-negative integer, not '12a'"),
    ("alert tcp any any -> any any (sid:1)", "36: the last option must end with ';'"),
    ("alert tcp any any -> any any (sid:1;", "37: expected ')' closing the rule options"),
    ("alert tcp any any -> any any (flags:SX; sid:1;)", "38: unknown TCP flag 'X'"),
    ("alert tcp any any -> any any (sid:1; flow:sideways;)", "43: flow: unknown keyword 'sideways'"),
    ("alert tcp any any -> any any (sid:1; ttl:300;)", "42: ttl: 300 is out of range 0-255"),
])
def test_syntax_errors_name_file_line_and_column(line, message):
    text = "# a comment\n\nalert ip any any -> any any (sid:100;)\n" + line + "\n"
    with pytest.raises(RuleSyntaxError) as exc:
        parse_rules(text, "bad.rules")
    assert str(exc.value).startswith("bad.rules:4:" + message), str(exc.value)


def test_unknown_classtype_and_duplicate_sid():
    with pytest.raises(RuleSyntaxError, match=r"^c.rules:1:47: unknown classtype 'nope'"):
        parse_rules("alert ip any any -> any any (sid:1; classtype:nope;)", "c.rules", classifications={})
    with pytest.raises(RuleSyntaxError, match=r"^c.rules:3:30: duplicate signature gid 1 sid 5 \(first on line 1\)"):
        parse_rules("alert ip any any -> any any (sid:5;)\n\nalert ip any any -> any any (sid:5;)\n", "c.rules")


def test_continuation_lines_report_the_first_line():
    rules = parse_rules("alert tcp any any -> any 80 \\\n  (msg:\"x\"; sid:1;)\n", "c.rules")
    assert [(r.sid, r.line) for r in rules] == [(1, 1)]
    with pytest.raises(RuleSyntaxError, match=r"^c.rules:2:.*unknown TCP flag"):
        parse_rules("\nalert tcp any any -> any 80 \\\n  (flags:Q; sid:1;)\n", "c.rules")


def test_bad_file_raises_and_returns_nothing(tmp_path):
    path = tmp_path / "x.rules"
    path.write_text("alert ip any any -> 1.1.1.1 any (sid:1;)\nalert ip any any -> 1.1.1.2 any (sid:2)\n")
    with pytest.raises(RuleSyntaxError) as exc:
        read_rules(path)
    assert (exc.value.file, exc.value.line) == (str(path), 2)


# --- the shared ET Open files -----------------------------------------------------------------------

def shared_rule_files():
    return sorted((SHARED_DATA / "rules").glob("*.rules")) if SHARED_DATA.is_dir() else []


@pytest.mark.parametrize("path", shared_rule_files() or [None], ids=lambda p: p.name if p else "absent")
def test_every_shared_rule_compiles_or_has_a_reason(path):
    if path is None:
        pytest.skip(f"shared rule files not found under {SHARED_DATA}/rules")
    prios = load_classifications(path.parent / "classification.config")
    table = compile_rules(read_rules(path, classifications=prios), capacity=1 << 30)
    active = [ln for ln in path.read_text().splitlines() if ln.startswith(("alert", "drop", "pass", "reject"))]
    assert len(table.rules) == len(active) > 0
    for rule in table.rules:
        assert rule.verdict in ("offloaded", "payload", "host path", "unsupported")
        assert (rule.verdict == "offloaded") == (rule.reason == ""), rule.text
    offloaded = {(r.gid, r.sid) for r in table.rules if r.verdict == "offloaded"}
    assert set(table.entries_by_sid) == offloaded


# The split recorded in docs/rules.md (ET Open snapshot of ../shared/data/rules, default vars).
SPLITS = {
    "emerging-exploit.rules": {"offloaded": 0, "payload": 192, "host path": 114, "unsupported": 1250},
    "emerging-scan.rules": {"offloaded": 0, "payload": 42, "host path": 47, "unsupported": 196},
}


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_split_recorded_in_docs(name, shared_data):
    path = shared_data / "rules" / name
    table = compile_rules(read_rules(path, classifications=load_classifications(path.parent / "classification.config")))
    assert {v: table.verdicts.get(v, 0) for v in SPLITS[name]} == SPLITS[name]


def test_random_address_expressions_against_brute_force():
    """Suricata's group semantics (positives minus negations) on 8 random /24s, checked address by address."""
    rng = random.Random(14)
    base = int(ipaddress.ip_address("10.0.0.0"))
    for _ in range(200):
        items = [(rng.random() < 0.4, rng.randrange(8), rng.choice([24, 25, 26])) for _ in range(rng.randrange(1, 5))]
        text = "[" + ",".join(f"{'!' if neg else ''}{ipaddress.ip_address(base + blk * 256)}/{ln}"
                              for neg, blk, ln in items) + "]"
        pos = [(neg, blk * 256, blk * 256 + (1 << (32 - ln)) - 1) for neg, blk, ln in items]
        if all(neg for neg, *_ in pos):
            continue        # pure negations reach outside the sample space; covered above
        want = {a for a in range(8 * 256) if any(lo <= a <= hi for n, lo, hi in pos if not n)
                and not any(lo <= a <= hi for n, lo, hi in pos if n)}
        try:
            got = parse_address(text)
        except RuleSyntaxError:
            assert not want
            continue
        have = {a - base for n in got.networks(4)
                for a in range(int(n.network_address), int(n.broadcast_address) + 1)}
        assert have == want, text

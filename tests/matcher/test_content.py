"""Content rules: the compiler (host_driver/rules/content.py), the host inspector's semantics
(host_driver/inspect.py) on hand-made cases from Suricata's documentation, its counters and verdicts,
and `secnic rules check` on content rules.

Ref: Suricata 7 user guide, "Payload Keywords" (content, nocase, depth, startswith, endswith, offset,
distance, within, dsize, fast_pattern) and "Fast Pattern"; the examples below follow it.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from host_driver.inspect import HostInspector, payload_bounds
from host_driver.model.matcher import MatcherModel
from host_driver.model.nic import parse_frame
from host_driver.rules import RuleSyntaxError, parse_rules
from host_driver.rules.content import compile_content, parse_content_value
from sim.cli.main import main


def rules(*options: str, proto="ip", action="alert"):
    text = "".join(f"{action} {proto} any any -> any any ({o} sid:{i + 1};)\n" for i, o in enumerate(options))
    return compile_content(parse_rules(text))


def fires(option: str, payload: bytes, proto="tcp") -> bool:
    program = rules(option, proto=proto)
    return bool(HostInspector(program.rules).matches(payload, program.rules))


def test_content_values():
    assert parse_content_value('"GET |20 2f|x"') == (b"GET  /x", False)
    assert parse_content_value('!"a\\;b\\"c\\\\"') == (b'a;b"c\\', True)
    assert parse_content_value('"|00|"') == (b"\x00", False)
    with pytest.raises(RuleSyntaxError, match="unterminated"):
        parse_content_value('"|00"')
    with pytest.raises(RuleSyntaxError, match="bad hex byte"):
        parse_content_value('"|0g|"')


@pytest.mark.parametrize("option,payload,expected", [
    ('content:"abc";', b"xxabcxx", True),
    ('content:"ABC";', b"xxabcxx", False),
    ('content:"ABC"; nocase;', b"xxabcxx", True),
    ('content:"abc"; offset:2;', b"xxabc", True),
    ('content:"abc"; offset:3;', b"xxabc", False),
    ('content:"abc"; depth:4;', b"xxabc", False),          # must end within the first 4 bytes
    ('content:"abc"; depth:5;', b"xxabc", True),
    ('content:"abc"; offset:1; depth:4;', b"xxabc", True),   # depth counts from the offset
    ('content:"abc"; offset:1; depth:3;', b"xxabc", False),
    ('content:"abc"; startswith;', b"abcx", True),
    ('content:"abc"; startswith;', b"xabc", False),
    ('content:"abc"; endswith;', b"xabc", True),
    ('content:"abc"; endswith;', b"abcx", False),
    ('content:"ab"; content:"cd"; distance:2;', b"ab..cd", True),
    ('content:"ab"; content:"cd"; distance:3;', b"ab..cd", False),
    ('content:"ab"; content:"cd"; within:3;', b"ab.cd", True),
    ('content:"ab"; content:"cd"; within:2;', b"ab.cd", False),
    ('content:"ab"; content:"cd"; within:3;', b"abcd.", True),
    ('content:"ab"; content:"cd"; distance:1; within:3;', b"ab.cd", True),   # within counts after distance
    ('content:"ab"; content:"cd"; distance:-2; within:4;', b"abcd", True),
    # Backtracking: the first "ab" has no "cd" right after it, the second has.
    ('content:"ab"; content:"cd"; within:2;', b"ab..abcd", True),
    ('content:"ab"; content:!"cd"; within:4;', b"ab..cd", False),
    # No retry without within: the first "ab" decides (Suricata gives up), with within it retries.
    ('content:"ab"; content:!"cd"; distance:0;', b"ab cd ab", False),
    ('content:"ab"; content:!"cd"; within:4;', b"ab..cd ab", True),
    ('content:"ab"; content:!"cd"; within:4;', b"ab...cd", True),
    ('content:"abc"; dsize:>5;', b"abc", False),
    ('content:"abc"; dsize:3;', b"abc", True),
    ('content:"abc"; dsize:2<>4;', b"abc", True),           # exclusive range: 3 only
    ('content:"abc"; dsize:3<>5;', b"abc", False),
])
def test_suricata_semantics(option, payload, expected):
    assert fires(option, payload) is expected


def test_fast_pattern_choice_and_statuses():
    p = rules('content:"abcdefgh"; content:"xyz12"; fast_pattern;',     # explicit fast_pattern wins
              'content:"abcd"; content:"longer one";',                   # the longest content
              'content:"ab\x00d"; nocase;',                              # 4 bytes, whole rule: offloaded
              'content:"AbCd";',                                         # case-sensitive: verified on host
              'content:"abc";',                                          # too short: host only
              'content:!"abcdef";',                                      # only negated: host only
              'content:"abcdefgh"; fast_pattern:2,4;')                   # chop: bytes 2..5
    got = [(r.status, r.contents[r.fast].pattern if r.fast is not None else None) for r in p.rules]
    assert got == [("prefilter", b"xyz12"), ("prefilter", b"longer one"), ("offloaded", b"ab\x00d"),
                   ("prefilter", b"AbCd"), ("host only", b"abc"), ("host only", None),
                   ("prefilter", b"abcdefgh")]
    assert p.rules[4].reason == "fast pattern shorter than the 4-byte window: 3 bytes"
    assert p.rules[5].reason == "only negated contents"
    assert p.rules[3].reason == "case-sensitive letters (the window is case-folded)"
    assert p.rules[6].fast_literal() == (b"cdef", False)


@pytest.mark.parametrize("header, reason", [
    ("alert ip any any -> any any", None),
    ("alert tcp any any -> any any", "protocol tcp"),
    ("alert ip 10.0.0.0/8 any -> any any", "source addresses"),
    ("alert ip any any -> ![1.2.3.4] any", "destination addresses"),
    ("alert ip any any -> any 80", "destination ports"),
    ("alert ip any any <> any any", None),
])
def test_offloaded_only_with_a_header_that_matches_every_ip_packet(header, reason):
    """The matcher settles a hit without the header: a 4-byte rule limited by its header is verified
    on the host (prefilter, the reason naming the header part), and so is a rule sharing its bucket."""
    p = compile_content(parse_rules(f'{header} (content:"ab|00|d"; nocase; sid:1;)\n'
                                    'alert ip any any -> any any (content:"ab|00|d"; nocase; sid:2;)\n'))
    if reason is None:
        assert [r.status for r in p.rules] == ["offloaded", "offloaded"]
    else:
        assert [(r.status, r.reason) for r in p.rules] == [
            ("prefilter", f"header: the matcher does not check it ({reason})"),
            ("prefilter", "bucket shared with a rule that needs verification")]
    flow = compile_content(parse_rules('alert ip any any -> any any (content:"ab|00|d"; nocase; flow:established; '
                                       'sid:1;)\n'))
    assert flow.rules[0].reason == "header: the matcher does not check it (flow)"


def test_table_holds_at_most_half_its_buckets():
    lits = [bytes([65 + i % 26, 97 + i // 26, 0x30 + i % 10, 0x40 + i]) + b"zz" for i in range(40)]
    text = "".join(f'alert tcp any any -> any any (content:"|{lit.hex(" ")}|"; sid:{i + 1};)\n'
                   for i, lit in enumerate(lits))
    p = compile_content(parse_rules(text), index_bits=6)
    assert len(p.table) == 32
    full = [r for r in p.rules if r.status == "host only"]
    assert len(full) == 8 and "pattern table full" in {r.reason for r in full}
    assert {r.reason for r in full} <= {"pattern table full", "every window of the fast pattern collides in the table"}


def frame(payload: bytes, dport=80, udp=False) -> bytes:
    l4 = UDP(sport=1234, dport=dport) if udp else TCP(sport=1234, dport=dport, flags="PA")
    return bytes(Ether() / IP(src="10.0.0.1", dst="192.168.1.2") / l4 / payload)


def test_host_path_alerts_verdicts_and_counters():
    text = ('alert tcp any any -> any 80 (content:"evil"; nocase; sid:1;)\n'
            'drop tcp any any -> any any (content:"DROPME"; sid:2;)\n'
            'alert udp any any -> any any (content:"evil"; sid:3;)\n'
            'pass tcp any any -> any any (content:"trusted"; sid:4;)\n')
    program = compile_content(parse_rules(text))
    model = MatcherModel(64, index_bits=program.index_bits)
    model.load(program.table)
    host = HostInspector(program.rules)
    cases = [(frame(b"xx EVIL xx"), [1], "reinject"),
             (frame(b"xx EVIL xx", dport=81), [], "reinject"),          # header: dport 80 only
             (frame(b"DROPME evil"), [1, 2], "drop"),
             (frame(b"evil", udp=True), [3], "reinject"),
             (frame(b"evil trusted"), [], "reinject"),                  # pass silences the frame
             (frame(b"nothing"), [], "reinject")]
    for raw, sids, verdict in cases:
        start, end = payload_bounds(raw, parse_frame(raw, physical=False, header_window=256, max_frame=16383))
        result = model.frame(raw, start, end - start)
        got = host.inspect(raw, program.candidates(result))
        assert (sorted(got.sids), got.verdict) == (sids, verdict), raw
    assert (host.frames_in, host.reinjected, host.dropped) == (6, 5, 1)


@pytest.mark.parametrize("options, frame_of, expected", [
    ("flags:S;", lambda p: bytes(Ether() / IP() / TCP(flags="S") / p), True),
    ("flags:S;", lambda p: bytes(Ether() / IP() / TCP(flags="PA") / p), False),
    ("ttl:<10;", lambda p: bytes(Ether() / IP(ttl=5) / TCP() / p), True),
    ("ttl:<10;", lambda p: bytes(Ether() / IP(ttl=64) / TCP() / p), False),
    ("flow:established,to_server;", None, True),
])
def test_host_path_checks_header_options(options, frame_of, expected):
    """A payload rule's header options (Suricata's flags, ttl, flow) are checked by the host path
    with the rule compiler's entries; ``flow`` against the state the NIC's record gives."""
    program = compile_content(parse_rules(f'alert tcp any any -> any any (content:"abcd"; {options} sid:1;)\n'))
    host = HostInspector(program.rules)
    if frame_of is None:
        raw = bytes(Ether() / IP() / TCP(flags="PA") / b"xxabcdxx")
        assert host.inspect(raw, flow=(True, True)).sids == [1]
        assert host.inspect(raw, flow=(True, False)).sids == []
        assert host.inspect(raw, flow=(False, False)).sids == []
        assert host.inspect(raw).sids == [1], "no flow state given: the option is not checked"
        return
    assert bool(host.inspect(frame_of(b"xxabcdxx")).sids) is expected


def test_padding_is_not_payload():
    """A 60-byte minimum frame: the Ethernet padding after the IP payload is not searched."""
    program = rules('content:"|00 00 00 00|";')
    raw = frame(b"a")
    assert len(raw) == 55
    padded = raw + bytes(5)
    assert HostInspector(program.rules).inspect(padded).sids == []


def test_rules_check_reports_matcher_statuses_and_bad_content(tmp_path, capsys):
    path = tmp_path / "c.rules"
    path.write_text('alert ip any any -> any any (content:"ab|00|d"; nocase; sid:1;)\n'
                    'alert tcp any any -> any any (content:"abcdef"; sid:2;)\n'
                    'alert tcp any any -> any any (content:"ab"; sid:3;)\n'
                    'alert tcp any any -> any any (content:"xy|00|z"; nocase; sid:4;)\n')
    assert main(["rules", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "payload matcher: 4 rules: 1 offloaded, 2 prefilter, 1 host only; 3 of 1024 literals" in out
    assert [line.split()[:2] for line in out if line.split()[:1] in (["1"], ["2"], ["3"], ["4"])][-4:] == \
        [["1", "offloaded"], ["2", "prefilter"], ["3", "host"], ["4", "prefilter"]]
    assert out[-2].split(None, 2)[2] == "header: the matcher does not check it (protocol tcp)"
    path.write_text('alert tcp any any -> any any (msg:"x"; content:"|zz|"; sid:1;)\n')
    assert main(["rules", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{path}:1:48: bad hex byte in content at 'zz|'"

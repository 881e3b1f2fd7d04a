"""Reading Suricata rule files: lines, header, options, and what each option means here.

Splitting the option list (``name:value;`` pairs, ``\\;`` escapes, ``msg`` unquoting, ``metadata``
lists) is the Suricata project's own ``idstools.rule``. It is given only the option list, behind a
fixed placeholder header, because its header handling is a regular expression that takes a
header's fields as the text up to the first ``]`` or space: nested groups (``[a,[b,c]]``), spaces
inside groups and Suricata's newer actions (``rejectsrc`` ...) come out wrong or as no rule at
all, silently, and it reports no positions. So the header is tokenized here, bracket-aware and
with columns, and its address and port expressions are parsed by :mod:`host_driver.rules.expr`.
idstools also does not read continuation lines with line numbers, so the file is read here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import idstools.rule

from host_driver.rules.expr import AddressSet, IntervalSet, RuleSyntaxError, parse_address, parse_ports

__all__ = ["Rule", "Classification", "read_classifications",
           "Option", "IntSet", "TcpFlags", "FlowMatch", "read_rules", "parse_rule", "load_classifications",
           "ACTIONS", "PROTOCOLS", "DEFAULT_ADDRESS_GROUPS", "DEFAULT_PORT_GROUPS", "DEFAULT_PRIORITY"]

log = logging.getLogger(__name__)

#: Suricata's actions; the three reject variants differ only in who gets the RST/unreachable.
ACTIONS = ("alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth")
#: Protocols this compiler takes, with the IP protocol numbers they match (None: any IP packet).
#: Suricata's ``icmp`` matches ICMPv4 and ICMPv6 alike (detect-engine-proto.c).
PROTOCOLS: dict[str, tuple[int, ...] | None] = {
    "ip": None, "tcp": (6,), "tcp-pkt": (6,), "udp": (17,), "udp-pkt": (17,),
    "icmp": (1, 58), "icmpv6": (58,),
}
#: Suricata 7's suricata.yaml ``vars``: used for any variable a vars file does not set.
DEFAULT_ADDRESS_GROUPS = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    **{name: "$HOME_NET" for name in (
        "HTTP_SERVERS", "SMTP_SERVERS", "SQL_SERVERS", "DNS_SERVERS", "TELNET_SERVERS", "DC_SERVERS",
        "DNP3_SERVER", "DNP3_CLIENT", "MODBUS_CLIENT", "MODBUS_SERVER", "ENIP_CLIENT", "ENIP_SERVER")},
    "AIM_SERVERS": "$EXTERNAL_NET",
}
DEFAULT_PORT_GROUPS = {
    "HTTP_PORTS": "80", "SHELLCODE_PORTS": "!80", "ORACLE_PORTS": "1521", "SSH_PORTS": "22",
    "DNP3_PORTS": "20000", "MODBUS_PORTS": "502", "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21", "GENEVE_PORTS": "6081", "VXLAN_PORTS": "4789", "TEREDO_PORTS": "3544",
}
#: Suricata's priority for a rule with neither ``priority`` nor a known ``classtype``.
DEFAULT_PRIORITY = 3

#: Options that only describe the rule (no effect on which packets match).
META_OPTIONS = {"msg", "sid", "rev", "gid", "classtype", "priority", "metadata", "reference", "target"}
#: Options compiled into classifier entries.
HEADER_OPTIONS = {"flags", "itype", "icode", "ip_proto", "ttl", "flow"}
#: Options of the payload matcher (issue 15): such a rule is a ``payload`` rule, not header-only.
PAYLOAD_OPTIONS = {"content", "nocase", "offset", "depth", "distance", "within", "fast_pattern", "rawbytes",
                   "startswith", "endswith", "dsize"}

_PLACEHOLDER = "alert ip any any -> any any ("


@dataclass(frozen=True)
class Option:
    """One ``name[:value];`` of a rule with the 1-based columns of its name and value."""

    name: str
    value: str | None
    column: int
    value_column: int


@dataclass(frozen=True)
class IntSet:
    """A set of small integers (TTL, ICMP type/code, IP protocol) as inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TcpFlags:
    """``flags``: the packet's flags byte matches when it matches any of these (value, mask) pairs."""

    ternary: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class FlowMatch:
    """``flow``: the flow-table state the packet must be in (None: either)."""

    established: bool | None = None
    to_server: bool | None = None


@dataclass
class Rule:
    """One active rule as read from a file, with its header evaluated and its options classified.

    ``verdict`` is ``offloaded`` (header-only: the classifier can hold it), ``payload`` (needs the
    payload matcher of issue 15; host path until then), ``host path`` (Suricata can run it, the
    NIC cannot) or ``unsupported`` (not a protocol or action this compiler takes); ``reason``
    says why for all but ``offloaded``.
    """

    file: str
    line: int
    text: str
    action: str
    proto: str
    src: AddressSet
    sport: IntervalSet
    bidirectional: bool
    dst: AddressSet
    dport: IntervalSet
    sid: int
    gid: int = 1
    rev: int = 0
    msg: str = ""
    classtype: str | None = None
    priority: int = DEFAULT_PRIORITY
    metadata: list[str] = field(default_factory=list)
    ip_protos: IntSet | None = None
    ttl: IntSet | None = None
    itype: IntSet | None = None
    icode: IntSet | None = None
    tcp_flags: TcpFlags | None = None
    flow: FlowMatch | None = None
    verdict: str = "offloaded"
    reason: str = ""


@dataclass(frozen=True)
class Classification:
    """One ``config classification: name,description,priority`` line of classification.config."""
    name: str
    description: str
    priority: int


def read_classifications(path: str | Path) -> dict[str, Classification]:
    """Every classification of a classification.config, by name (a line that is neither a
    comment nor a classification: :class:`RuleSyntaxError` with file and line)."""
    out = {}
    path = Path(path)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"config\s+classification\s*:\s*([^,]+),([^,]*),\s*(\d+)\s*", line)
        if not m:
            raise RuleSyntaxError("expected 'config classification: name,description,priority'", 1, n, str(path))
        name = m.group(1).strip()
        out[name] = Classification(name, m.group(2).strip(), int(m.group(3)))
    return out


def load_classifications(path: str | Path) -> dict[str, int]:
    """``classtype`` name -> priority from a classification.config (:func:`read_classifications`)."""
    return {name: c.priority for name, c in read_classifications(path).items()}


def read_rules(path: str | Path, address_groups: Mapping[str, str] | None = None,
               port_groups: Mapping[str, str] | None = None,
               classifications: Mapping[str, int] | None = None) -> list[Rule]:
    """Every active rule of a file, in file order; commented-out rules are skipped.

    Raises :class:`RuleSyntaxError` (with file, line and column) at the first rule that does not
    parse; nothing is returned then. A rule may continue on the next line after a trailing ``\\``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RuleSyntaxError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", None, None, str(path)) from None
    return parse_rules(text, str(path), address_groups, port_groups, classifications)


def parse_rules(text: str, file: str = "<rules>", address_groups: Mapping[str, str] | None = None,
                port_groups: Mapping[str, str] | None = None,
                classifications: Mapping[str, int] | None = None) -> list[Rule]:
    """:func:`read_rules` on text already in memory (``file`` names it in errors)."""
    addr = {**DEFAULT_ADDRESS_GROUPS, **(address_groups or {})}
    ports = {**DEFAULT_PORT_GROUPS, **(port_groups or {})}
    rules: list[Rule] = []
    seen: dict[tuple[int, int], int] = {}
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if pending:
            # Continuation: columns are counted in the joined text, reported against the first line.
            raw = pending + raw
        else:
            start = n
        if raw.rstrip().endswith("\\"):
            pending = raw.rstrip()[:-1]
            continue
        pending = ""
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            rule = parse_rule(raw, file, start, addr, ports, classifications)
        except RuleSyntaxError as exc:
            raise exc.located(file, start) from None
        key = (rule.gid, rule.sid)
        if key in seen:
            sid_opt = _find_option_column(raw, "sid")
            raise RuleSyntaxError(f"duplicate signature gid {rule.gid} sid {rule.sid} (first on line {seen[key]})",
                                  sid_opt, start, file)
        seen[key] = start
        rules.append(rule)
    if pending:
        raise RuleSyntaxError("file ends inside a rule continued with '\\'", 1, start, file)
    return rules


def _find_option_column(text: str, name: str) -> int | None:
    m = re.search(rf"[(;]\s*({re.escape(name)})\s*:", text)
    return m.start(1) + 1 if m else None


def _header_tokens(text: str, end: int) -> list[tuple[str, int]]:
    """Whitespace-separated header fields of ``text[:end]`` (a field may hold bracketed spaces)."""
    out, i, depth = [], 0, 0
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        j, depth = i, 0
        while j < end and (depth or not text[j].isspace()):
            depth = max(0, depth + {"[": 1, "]": -1}.get(text[j], 0))   # a stray ']' is the parser's to report
            j += 1
        out.append((text[i:j], i + 1))
        i = j
    return out


def _options_start(text: str) -> int:
    """Index of the '(' that opens the options: the first one outside brackets."""
    open_brackets: list[int] = []
    for i, c in enumerate(text):
        if c == "[":
            open_brackets.append(i)
        elif c == "]" and open_brackets:
            open_brackets.pop()
        elif c == "(" and not open_brackets:
            return i
    if open_brackets:
        raise RuleSyntaxError("'[' is never closed", open_brackets[-1] + 1)
    raise RuleSyntaxError("expected '(' opening the rule options", len(text.rstrip()) + 1)


_HEADER_FIELDS = ("action", "protocol", "source address", "source port", "direction", "destination address",
                  "destination port")


def parse_rule(text: str, file: str = "<rule>", line: int = 1, address_groups: Mapping[str, str] | None = None,
               port_groups: Mapping[str, str] | None = None,
               classifications: Mapping[str, int] | None = None) -> Rule:
    """One rule line. Errors carry the column; :func:`read_rules` adds file and line."""
    addr = address_groups if address_groups is not None else DEFAULT_ADDRESS_GROUPS
    ports = port_groups if port_groups is not None else DEFAULT_PORT_GROUPS
    open_at = _options_start(text)
    fields = _header_tokens(text, open_at)
    if len(fields) < len(_HEADER_FIELDS):
        missing = _HEADER_FIELDS[len(fields)]
        raise RuleSyntaxError(f"header ends early: expected the {missing}", open_at + 1)
    if len(fields) > len(_HEADER_FIELDS):
        tok, col = fields[len(_HEADER_FIELDS)]
        raise RuleSyntaxError(f"unexpected {tok!r} after the destination port", col)
    (action, acol), (proto, pcol), (src, scol), (sport, spcol), (direction, dcol), (dst, dscol), (dport, dpcol) = fields

    unsupported = ""
    if action not in ACTIONS:
        if action == "config":
            unsupported = "action 'config' (Suricata's config rules) is not a packet verdict"
        else:
            raise RuleSyntaxError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})", acol)
    if direction not in ("->", "<>"):
        if direction == "=>":
            unsupported = unsupported or "direction '=>' (Suricata 8 transactional rules)"
        else:
            raise RuleSyntaxError(f"bad direction {direction!r} (expected '->' or '<>')", dcol)
    proto_l = proto.lower()
    if proto_l not in PROTOCOLS:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]*", proto_l):
            raise RuleSyntaxError(f"bad protocol {proto!r}", pcol)
        # Application-layer protocols (http, dns, tls...) need the host's parsers.
        unsupported = unsupported or f"protocol {proto}"

    src_set = parse_address(src, addr, scol, "source address")
    dst_set = parse_address(dst, addr, dscol, "destination address")
    sport_set = parse_ports(sport, ports, spcol, "source port")
    dport_set = parse_ports(dport, ports, dpcol, "destination port")

    options = _split_options(text, open_at)
    rule = Rule(file=file, line=line, text=text.strip(), action=action, proto=proto_l, src=src_set, sport=sport_set,
                bidirectional=direction == "<>", dst=dst_set, dport=dport_set, sid=0)
    _apply_options(rule, options, classifications, open_at)
    if unsupported:
        rule.verdict, rule.reason = "unsupported", unsupported
    return rule


def _split_options(text: str, open_at: int) -> list[Option]:
    close_at = text.rstrip().rfind(")")
    if close_at < open_at or text.rstrip()[-1] != ")":
        raise RuleSyntaxError("expected ')' closing the rule options at the end of the rule", len(text.rstrip()) + 1)
    body = text[open_at + 1:close_at]
    if body.strip() and not body.rstrip().endswith(";"):
        raise RuleSyntaxError("the last option must end with ';'", open_at + 1 + len(body.rstrip()) + 1)
    for m in re.finditer(r"(?:^|;)\s*(sid|gid|rev|priority)\s*:\s*([^;]*)", body):
        if not re.fullmatch(r"\d+", m.group(2).strip()):
            raise RuleSyntaxError(f"{m.group(1)} must be a non-negative integer, not {m.group(2).strip()!r}",
                                  open_at + 2 + m.start(2))
    try:
        parsed = idstools.rule.parse(_PLACEHOLDER + body + ")")
    except Exception as exc:  # idstools raises a bare Exception for an unterminated option
        raise RuleSyntaxError(f"cannot split the options ({exc})", open_at + 1) from None
    if parsed is None:
        raise RuleSyntaxError("cannot split the options", open_at + 1)
    out, cursor = [], 0
    for opt in parsed["options"]:
        name, value = opt["name"], opt["value"]
        at = body.find(name, cursor)
        value_at = body.find(value, at + len(name)) if value is not None else at
        cursor = (value_at + len(value)) if value is not None else at + len(name)
        out.append(Option(name, value, open_at + 2 + at, open_at + 2 + value_at))
    return out


# --- options -------------------------------------------------------------------------------------

def _apply_options(rule: Rule, options: list[Option], classifications, open_at: int) -> None:
    payload, host = "", ""
    explicit_priority = None
    for opt in options:
        name, value = opt.name, opt.value
        if name in ("sid", "gid", "rev"):
            setattr(rule, name, int(value))     # checked to be digits by _split_options
        elif name == "priority":
            explicit_priority = int(value)
        elif name == "msg":
            rule.msg = _need(opt).strip().strip('"')
        elif name == "classtype":
            rule.classtype = _need(opt).strip()
            if classifications is not None and rule.classtype not in classifications:
                raise RuleSyntaxError(f"unknown classtype {rule.classtype!r} (not in the classification config)",
                                      opt.value_column)
        elif name == "metadata":
            rule.metadata += [m.strip() for m in _need(opt).split(",")]
        elif name in META_OPTIONS:
            pass
        elif name == "flags":
            rule.tcp_flags = _parse_flags(opt)
        elif name in ("itype", "icode", "ttl"):
            got, unsupported = _parse_uint8(opt, angle_range=name != "ttl")
            setattr(rule, name, got)
            host = host or unsupported
        elif name == "ip_proto":
            rule.ip_protos = _parse_ip_proto(opt)
        elif name == "flow":
            rule.flow, unsupported = _parse_flow(opt)
            host = host or unsupported
        elif name in PAYLOAD_OPTIONS:
            payload = payload or name
        else:
            host = host or name
    if not any(o.name == "sid" for o in options):
        raise RuleSyntaxError("rule has no sid", open_at + 1)
    if explicit_priority is not None:
        rule.priority = explicit_priority
    elif rule.classtype and classifications:
        rule.priority = classifications[rule.classtype]
    if host:
        rule.verdict, rule.reason = "host path", host
    elif payload:
        rule.verdict, rule.reason = "payload", payload


def _need(opt: Option) -> str:
    if opt.value is None or not opt.value.strip():
        raise RuleSyntaxError(f"{opt.name} needs a value", opt.column)
    return opt.value


_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80,
              "2": 0x40, "1": 0x80}


def _parse_flags(opt: Option) -> TcpFlags:
    """Suricata's ``flags:[!+*]FLAGS[,IGNORED]`` (detect-tcp-flags.c) as ternary (value, mask) pairs."""
    text = _need(opt).strip()
    flags_text, _, ignore_text = text.partition(",")
    modifier, flags, found = "", 0, False
    for i, c in enumerate(flags_text.strip()):
        if c in "!+*":
            if modifier:
                raise RuleSyntaxError("flags takes one modifier (!, + or *)", opt.value_column + i)
            modifier = c
        elif c == "0":
            flags, found = 0, True
        elif c.upper() in _FLAG_BITS:
            flags |= _FLAG_BITS[c.upper()]
            found = True
        else:
            raise RuleSyntaxError(f"unknown TCP flag {c!r} (expected F S R P A U C E 0 and ! + *)",
                                  opt.value_column + i)
    if not found:
        raise RuleSyntaxError("flags names no flag", opt.value_column)
    ignored = 0
    if ignore_text.strip():
        for c in ignore_text.strip():
            if c.upper() not in _FLAG_BITS:
                raise RuleSyntaxError(f"unknown TCP flag {c!r} in the ignored set", opt.value_column + len(flags_text))
            ignored |= _FLAG_BITS[c.upper()]
    care = 0xFF & ~ignored
    if flags == 0:
        # flags:0 looks at the whole byte whatever is ignored; !0 is "any flag set".
        ternary = [(1 << b, 1 << b) for b in range(8)] if modifier == "!" else [] if modifier == "*" else [(0, 0xFF)]
    elif modifier == "":
        ternary = [] if flags & ignored else [(flags, care)]
    elif modifier == "+":
        ternary = [] if flags & ignored else [(flags, flags)]
    elif modifier == "*":
        ternary = [(1 << b, 1 << b) for b in range(8) if flags & care & (1 << b)]
    else:  # "!": not all of FLAGS are set, i.e. one of them is clear (an ignored one always reads clear)
        ternary = [(0, 0)] if flags & ignored else [(0, 1 << b) for b in range(8) if flags & (1 << b)]
    return TcpFlags(tuple(ternary))     # empty: the rule can never match (compile says so)


def _parse_uint8(opt: Option, angle_range: bool) -> tuple[IntSet | None, str]:
    """Suricata's integer keyword syntax for an 8-bit field (ranges ``a-b`` and ``a<>b`` are exclusive)."""
    text = _need(opt).strip().replace(" ", "")
    if text.startswith("&"):
        return None, f"{opt.name} bitmask"

    def num(s: str) -> int:
        try:
            v = int(s, 16) if s.lower().startswith("0x") else int(s)
        except ValueError:
            raise RuleSyntaxError(f"{opt.name}: bad number {s!r}", opt.value_column) from None
        if not 0 <= v <= 255:
            raise RuleSyntaxError(f"{opt.name}: {v} is out of range 0-255", opt.value_column)
        return v

    negate = text.startswith("!") and not text.startswith("!=")
    body = text[1:] if negate else text
    m = re.fullmatch(r"(\w+)(-|<>)(\w+)", body)
    if m and (m.group(2) == "-" or angle_range):
        lo, hi = num(m.group(1)) + 1, num(m.group(3)) - 1
        if lo > hi + 1:
            raise RuleSyntaxError(f"{opt.name}: range {body!r} runs backwards", opt.value_column)
        ranges = [(lo, hi)] if lo <= hi else []
    elif body.startswith(("<=", ">=", "!=")):
        v = num(body[2:])
        ranges = {"<=": [(0, v)], ">=": [(v, 255)], "!=": [(0, v - 1), (v + 1, 255)]}[body[:2]]
    elif body.startswith(("<", ">", "=")):
        v = num(body[1:])
        ranges = {"<": [(0, v - 1)], ">": [(v + 1, 255)], "=": [(v, v)]}[body[0]]
    else:
        v = num(body)
        ranges = [(v, v)]
    got = IntervalSet(255, [r for r in ranges if r[0] <= r[1]])
    if negate:
        got = got.complement()
    return IntSet(got.intervals), ""


_PROTO_NAMES = {"ip": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
                "ipv6-icmp": 58, "icmpv6": 58, "pim": 103, "sctp": 132}


def _parse_ip_proto(opt: Option) -> IntSet:
    """``ip_proto:[!<>]N|name`` (detect-ipproto.c)."""
    text = _need(opt).strip()
    op = text[0] if text[:1] in "!<>" else ""
    body = text[len(op):].strip()
    if body.lower() in _PROTO_NAMES:
        v = _PROTO_NAMES[body.lower()]
    else:
        try:
            v = int(body)
        except ValueError:
            raise RuleSyntaxError(f"ip_proto: unknown protocol {body!r}", opt.value_column) from None
        if not 0 <= v <= 255:
            raise RuleSyntaxError(f"ip_proto: {v} is out of range 0-255", opt.value_column)
    ranges = {"": [(v, v)], "!": [(0, v - 1), (v + 1, 255)], "<": [(0, v - 1)], ">": [(v + 1, 255)]}[op]
    return IntSet(IntervalSet(255, [r for r in ranges if r[0] <= r[1]]).intervals)


_FLOW_DIRECTION = {"to_server": True, "from_client": True, "to_client": False, "from_server": False}


def _parse_flow(opt: Option) -> tuple[FlowMatch | None, str]:
    """``flow:`` keywords: state and direction go to the classifier key (from the flow table)."""
    established = to_server = None
    host = ""
    for word in (w.strip() for w in _need(opt).split(",")):
        if word in ("established", "not_established"):
            if established is not None:
                raise RuleSyntaxError("flow: established and not_established together", opt.value_column)
            established = word == "established"
        elif word in _FLOW_DIRECTION:
            if to_server is not None and to_server != _FLOW_DIRECTION[word]:
                raise RuleSyntaxError("flow: both directions given", opt.value_column)
            to_server = _FLOW_DIRECTION[word]
        elif word in ("stateless", "no_stream", "no_frag"):
            # The NIC sees packets only, never a reassembled stream or datagram: always true here.
            pass
        elif word in ("only_stream", "only_frag"):
            host = host or f"flow:{word}"
        else:
            raise RuleSyntaxError(f"flow: unknown keyword {word!r}", opt.value_column)
    if established is None and to_server is None:
        return None, host
    return FlowMatch(established, to_server), host

"""Content rules into the payload matcher's tables, and each rule's verification program.

A rule with payload options (``content`` with ``|hex|``, ``nocase``, ``offset``, ``depth``,
``distance``, ``within``, ``startswith``, ``endswith``, ``dsize``, ``fast_pattern``, ``rawbytes``)
gets one of three matcher statuses (docs/matcher.md):

* ``offloaded``: the hardware's hit proves the rule (one content of exactly 4 bytes that is
  ``nocase`` or has no letters, no positional modifier, no ``dsize``, a full-tag table, a header
  that matches every IP packet, and its bucket shared with no literal that needs verification):
  the NIC alerts without the host. The matcher does not check a payload rule's header, so a rule
  limited to a protocol, addresses, ports or a ``flow`` state is prefiltered (:func:`header_any_ip`);
* ``prefilter``: the rule's fast pattern is in the table; a frame that hits is punted with the
  rule ids and the host (host_driver/inspect.py) verifies the whole rule;
* ``host only`` with the reason (fast pattern shorter than the 4-byte window, only negated
  contents, the table is full...): every frame the rule's header matches goes to the host.

The fast pattern is chosen as Suricata does (detect-engine-mpm.c): the content marked
``fast_pattern``, else the longest positive content (the first of equal length). ``fast_pattern:
only`` is ignored (Suricata 7 treats it as plain ``fast_pattern``); ``fast_pattern:O,L`` takes
bytes O..O+L of the content.

Each literal occupies one bucket through one of its 4-byte windows; the compiler picks, per
literal, the rarest window (by a rough byte-frequency score) whose bucket is free, so a hit names
few rules and ordinary traffic rarely hits, else one whose bucket already holds the same folded
window (no table space); literals with the fewest windows are placed
first, and at most half the buckets are filled.

Nothing here imports :mod:`sim`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from hdl.matcher import entry_layout
from hdl.matcher.hashing import WINDOW, fingerprint, fold_bytes
from host_driver.model.matcher import Entry, FrameResult
from host_driver.rules.expr import RuleSyntaxError
from host_driver.rules.parse import PROTOCOLS, Option, Rule, _options_start, _split_options

__all__ = ["Content", "Dsize", "ContentRule", "Placement", "MatcherProgram", "compile_content",
           "parse_content_value", "parse_content_rule", "header_any_ip", "STATUSES", "DEFAULT_INDEX_BITS"]

log = logging.getLogger(__name__)

#: Matcher statuses, in the order ``rules check`` prints them.
STATUSES = ("offloaded", "prefilter", "host only")
#: The default build's table: 2**11 buckets, at most 1024 literals.
DEFAULT_INDEX_BITS = 11
_MODIFIERS = ("offset", "depth", "distance", "within")


@dataclass(frozen=True)
class Content:
    """One ``content`` with its modifiers (None: not given)."""

    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False
    chop: tuple[int, int] | None = None

    @property
    def relative(self) -> bool:
        """Anchored to the previous content's match (``distance``/``within``)."""
        return self.distance is not None or self.within is not None

    @property
    def positional(self) -> bool:
        return self.relative or self.offset is not None or self.depth is not None or self.startswith or self.endswith


@dataclass(frozen=True)
class Dsize:
    """``dsize``: the payload size must be in ``lo..hi`` (inclusive), or outside it when ``negated``."""

    lo: int
    hi: int
    negated: bool = False

    def matches(self, size: int) -> bool:
        return (self.lo <= size <= self.hi) != self.negated


@dataclass(frozen=True)
class Placement:
    """Where a rule's fast pattern sits in the table: its bucket and the window's offset in the literal."""

    rule: int           # index into MatcherProgram.rules
    bucket: int
    window_offset: int


@dataclass
class ContentRule:
    """A payload rule: its contents in rule order, ``dsize``, the fast pattern and the matcher status."""

    rule: Rule
    contents: list[Content]
    dsize: Dsize | None = None
    fast: int | None = None             # index of the fast-pattern content
    status: str = "host only"
    reason: str = ""
    placement: Placement | None = None

    @property
    def sid(self) -> int:
        return self.rule.sid

    def fast_literal(self) -> tuple[bytes, bool] | None:
        """(bytes, nocase) the prefilter looks for, or None."""
        if self.fast is None:
            return None
        c = self.contents[self.fast]
        lit = c.pattern if c.chop is None else c.pattern[c.chop[0]:c.chop[0] + c.chop[1]]
        return lit, c.nocase


def parse_content_value(text: str, column: int = 1) -> tuple[bytes, bool]:
    """(bytes, negated) of a ``content`` value such as ``!"GET |20|\\;x"``."""
    s = text.strip()
    negated = s.startswith("!")
    if negated:
        s = s[1:].strip()
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise RuleSyntaxError(f"content must be a quoted string, not {text.strip()!r}", column)
    s = s[1:-1]
    out = bytearray()
    i, hex_mode = 0, False
    while i < len(s):
        ch = s[i]
        if ch == "|":
            hex_mode = not hex_mode
            i += 1
        elif hex_mode:
            m = re.match(r"\s*([0-9A-Fa-f]{2})\s*", s[i:])
            if not m:
                raise RuleSyntaxError(f"bad hex byte in content at {s[i:i + 4]!r}", column)
            out.append(int(m.group(1), 16))
            i += m.end()
        elif ch == "\\":
            if i + 1 >= len(s) or s[i + 1] not in '\\";:':
                raise RuleSyntaxError(f"bad escape in content: {s[i:i + 2]!r}", column)
            out += s[i + 1].encode()
            i += 2
        else:
            out += ch.encode("utf-8")
            i += 1
    if hex_mode:
        raise RuleSyntaxError("unterminated |hex| in content", column)
    if not out:
        raise RuleSyntaxError("empty content", column)
    return bytes(out), negated


def _int(opt: Option, lo: int = -65535, hi: int = 65535) -> int:
    try:
        v = int(opt.value.strip(), 0)
    except (AttributeError, ValueError):
        raise RuleSyntaxError(f"{opt.name} must be an integer, not {opt.value!r}", opt.value_column) from None
    if not lo <= v <= hi:
        raise RuleSyntaxError(f"{opt.name} must be in {lo}..{hi}, not {v}", opt.value_column)
    return v


def _dsize(opt: Option) -> Dsize:
    """Suricata's integer syntax for dsize: N, <N, >N, <=N, >=N, A<>B and A-B (exclusive), !N."""
    v = (opt.value or "").strip().replace(" ", "")
    big = 65535
    m = re.fullmatch(r"(\d+)(?:<>|-)(\d+)", v)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a >= b:
            raise RuleSyntaxError(f"dsize range must have its low end first: {v!r}", opt.value_column)
        return Dsize(a + 1, b - 1)
    m = re.fullmatch(r"(!|<=|>=|<|>|=)?(\d+)", v)
    if not m:
        raise RuleSyntaxError(f"bad dsize {v!r}", opt.value_column)
    op, n = m.group(1) or "=", int(m.group(2))
    return {"=": Dsize(n, n), "!": Dsize(n, n, True), "<": Dsize(0, n - 1), ">": Dsize(n + 1, big),
            "<=": Dsize(0, n), ">=": Dsize(n, big)}[op]


def parse_content_rule(rule: Rule) -> ContentRule:
    """The contents and ``dsize`` of a rule, each modifier attached to the content before it."""
    options = _split_options(rule.text, _options_start(rule.text))
    contents: list[dict] = []
    dsize = None
    for opt in options:
        name = opt.name
        if name == "content":
            pattern, negated = parse_content_value(opt.value or "", opt.value_column)
            contents.append({"pattern": pattern, "negated": negated})
            continue
        if name == "dsize":
            dsize = _dsize(opt)
            continue
        if name not in ("nocase", "fast_pattern", "startswith", "endswith", "rawbytes", *_MODIFIERS):
            continue
        if not contents:
            raise RuleSyntaxError(f"{name} needs a content before it", opt.column)
        c = contents[-1]
        if name in ("nocase", "startswith", "endswith"):
            c[name] = True
        elif name == "fast_pattern":
            c["fast_pattern"] = True
            val = (opt.value or "").strip()
            if val and val != "only":
                m = re.fullmatch(r"(\d+),(\d+)", val.replace(" ", ""))
                if not m:
                    raise RuleSyntaxError(f"bad fast_pattern value {val!r}", opt.value_column)
                c["chop"] = (int(m.group(1)), int(m.group(2)))
        elif name in _MODIFIERS:
            c[name] = _int(opt, 0 if name in ("offset", "depth") else -65535)
            if name in ("depth", "within") and c[name] == 0:
                raise RuleSyntaxError(f"{name} must be positive", opt.value_column)
    out = []
    for c in contents:
        if ("offset" in c or "depth" in c) and ("distance" in c or "within" in c):
            raise RuleSyntaxError("a content cannot have both offset/depth and distance/within", 1)
        out.append(Content(**c))
    return ContentRule(rule, out, dsize)


def _byte_weight(b: int) -> int:
    """How common a byte is in traffic, roughly (Hyperscan and Pigasus rank fast-pattern windows by
    byte frequency likewise): NUL, space, 0xFF and letters are everywhere; other bytes are rarer."""
    if b in (0x00, 0x20, 0xFF):
        return 8
    if 0x61 <= b <= 0x7A or 0x41 <= b <= 0x5A:
        return 4
    if 0x30 <= b <= 0x39 or b in b"\r\n/.:=-_,;&?\t":
        return 3
    return 2 if 0x21 <= b <= 0x7E else 1


#: Ordinary protocol text: a window seen here is a poor fast pattern (it would hit on most web or
#: mail traffic). Typical HTTP/1.1 request and response headers, SMTP and FTP commands.
_BACKGROUND = fold_bytes(
    b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    b"\r\nAccept: text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en"
    b"\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nCookie: session=; expires=\r\n"
    b"POST /api/v1/login HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n"
    b"HTTP/1.1 200 OK\r\nServer: Apache\r\nDate: \r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
    b"Set-Cookie: Location: http://https://Referer: Authorization: Basic \r\n\r\n<html><head><title></title>"
    b"<script type=\"text/javascript\"></script></head><body></body></html>\r\nEHLO HELO MAIL FROM:<> RCPT TO:<>"
    b" DATA QUIT USER PASS RETR STOR 220 250 331 530 Subject: From: To: Message-ID: MIME-Version: 1.0\r\n")
_BACKGROUND_WINDOWS = {_BACKGROUND[i:i + WINDOW] for i in range(len(_BACKGROUND) - WINDOW + 1)}


def _commonness(window: bytes) -> tuple[int, int]:
    """Rank of a 4-byte window as a fast pattern, lower is better: seen in ordinary protocol text
    first, then a byte-frequency score (one repeated byte worst)."""
    folded = fold_bytes(window)
    score = sum(_byte_weight(b) for b in window) + (12 if len(set(folded)) == 1 else 0)
    return (folded in _BACKGROUND_WINDOWS, score)


def _has_letters(data: bytes) -> bool:
    return any(0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A for b in data)


@dataclass
class MatcherProgram:
    """The compiled payload rules: the table the driver writes and what the host verifies.

    ``table`` maps bucket -> :class:`~host_driver.model.matcher.Entry` (absent buckets are
    invalid); ``buckets`` maps bucket -> the rules whose fast pattern sits there.
    """

    index_bits: int
    tag_bits: int
    rules: list[ContentRule]
    table: dict[int, Entry] = field(default_factory=dict)
    buckets: dict[int, list[Placement]] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        """Literals the table takes: half its buckets."""
        return (1 << self.index_bits) // 2

    def table_writes(self) -> list[tuple[int, int]]:
        """(bucket, packed entry) for every bucket, invalid ones included (after a commit the shadow
        bank holds the previous table, so the driver rewrites all of it), packed with the gateware's
        own :func:`hdl.matcher.entry_layout`."""
        layout = entry_layout(self.tag_bits)
        return [(index, layout.const({"valid": e.valid, "settled": e.settled, "tag": e.tag}).as_bits())
                for index in range(1 << self.index_bits)
                for e in [self.table.get(index, Entry())]]

    def by_status(self) -> dict[str, list[ContentRule]]:
        out: dict[str, list[ContentRule]] = {s: [] for s in STATUSES}
        for r in self.rules:
            out[r.status].append(r)
        return out

    def host_only(self) -> list[ContentRule]:
        return [r for r in self.rules if r.status == "host only"]

    def candidates(self, result: FrameResult) -> list[ContentRule]:
        """The rules the host must verify for a frame the matcher punted with ``result``:
        the rules of its hit buckets (every prefiltered rule on overflow), then the host-only ones."""
        if result.overflow:
            picked = [r for r in self.rules if r.status != "host only"]
        else:
            seen = {p.rule for h in result.hits for p in self.buckets.get(h.bucket, ())}
            picked = [self.rules[i] for i in sorted(seen)]
        return picked + self.host_only()

    def settled(self, result: FrameResult) -> list[ContentRule]:
        """The rules the hardware proved on its own (settled hits, offloaded rules)."""
        seen = {p.rule for h in result.hits if h.settled for p in self.buckets.get(h.bucket, ())}
        return [self.rules[i] for i in sorted(seen) if self.rules[i].status == "offloaded"]


def _choose_fast(cr: ContentRule) -> str:
    """Set ``cr.fast``; return why there is no usable fast pattern ('' when there is one)."""
    if not cr.contents:
        return "no content (dsize alone)"
    marked = [i for i, c in enumerate(cr.contents) if c.fast_pattern]
    if marked:
        cr.fast = marked[0]
        if cr.contents[cr.fast].negated:
            cr.fast = None
            return "fast_pattern on a negated content"
    else:
        positive = [i for i, c in enumerate(cr.contents) if not c.negated]
        if not positive:
            return "only negated contents"
        cr.fast = max(positive, key=lambda i: (len(cr.contents[i].pattern), -i))
    lit, _ = cr.fast_literal()
    if len(lit) < WINDOW:
        return f"fast pattern shorter than the {WINDOW}-byte window: {len(lit)} bytes"
    return ""


def header_any_ip(rule: Rule) -> str:
    """Why the rule's header does not match every IP packet ('' when it does): the matcher settles
    a hit without looking at the header, so only such a rule can be settled in hardware."""
    if PROTOCOLS.get(rule.proto, ()) is not None:
        return f"protocol {rule.proto}"
    for side in ("src", "dst"):
        addrs = getattr(rule, side)
        if not (addrs.v4.is_full() and addrs.v6.is_full()):
            return f"{'source' if side == 'src' else 'destination'} addresses"
    for side in ("sport", "dport"):
        if not getattr(rule, side).is_full():
            return f"{'source' if side == 'sport' else 'destination'} ports"
    for name in ("ip_protos", "ttl", "itype", "icode", "tcp_flags", "flow"):
        if getattr(rule, name) is not None:
            return {"ip_protos": "ip_proto", "tcp_flags": "flags"}.get(name, name)
    return ""


def _fully_offloadable(cr: ContentRule, exact_table: bool) -> bool:
    if not exact_table or cr.dsize is not None or len(cr.contents) != 1 or header_any_ip(cr.rule):
        return False
    c = cr.contents[0]
    return (len(c.pattern) == WINDOW and not c.negated and not c.positional and c.chop is None
            and (c.nocase or not _has_letters(c.pattern)))


def compile_content(rules: Sequence[Rule], index_bits: int = DEFAULT_INDEX_BITS,
                    tag_bits: int | None = None) -> MatcherProgram:
    """Compile the ``payload`` rules of ``rules`` (others are skipped) into a :class:`MatcherProgram`.

    Raises :class:`RuleSyntaxError` (with the rule's file and line) for a malformed content value.
    """
    tag_bits = 32 - index_bits if tag_bits is None else tag_bits
    program = MatcherProgram(index_bits, tag_bits, [])
    for rule in rules:
        if rule.verdict != "payload":
            continue
        try:
            cr = parse_content_rule(rule)
        except RuleSyntaxError as exc:
            raise exc.located(rule.file, rule.line) from None
        why = _choose_fast(cr)
        cr.status, cr.reason = ("host only", why) if why else ("prefilter", "")
        program.rules.append(cr)

    # Place the fast patterns: fewest windows first, so short literals get their only window.
    pending = [i for i, cr in enumerate(program.rules) if cr.status == "prefilter"]
    pending.sort(key=lambda i: (len(program.rules[i].fast_literal()[0]), i))
    tags: dict[int, int] = {}
    for i in pending:
        cr = program.rules[i]
        lit, _ = cr.fast_literal()
        windows = [(wo, *fingerprint(lit[wo:wo + WINDOW], index_bits, tag_bits))
                   for wo in range(len(lit) - WINDOW + 1)]
        # Rarest window first (see _commonness), then the first in the literal.
        windows.sort(key=lambda w: (_commonness(lit[w[0]:w[0] + WINDOW]), w[0]))
        shared = [w for w in windows if tags.get(w[1]) == w[2]]
        free = [w for w in windows if w[1] not in tags]
        # A bucket of its own keeps the candidates per hit few; sharing one costs no table space.
        if free and len(tags) < program.capacity:
            wo, index, tag = free[0]
        elif shared:
            wo, index, tag = shared[0]
        else:
            cr.status = "host only"
            cr.reason = ("pattern table full" if len(tags) >= program.capacity
                         else "every window of the fast pattern collides in the table")
            continue
        tags[index] = tag
        cr.placement = Placement(i, index, wo)
        program.buckets.setdefault(index, []).append(cr.placement)
    exact = tag_bits == 32 - index_bits
    for index, placements in program.buckets.items():
        settle = all(_fully_offloadable(program.rules[p.rule], exact) for p in placements)
        program.table[index] = Entry(valid=True, settled=settle, tag=tags[index])
        for p in placements:
            cr = program.rules[p.rule]
            if settle:
                cr.status, cr.reason = "offloaded", "the 4-byte window is the whole rule"
            else:
                c = cr.contents[cr.fast]
                lit, _ = cr.fast_literal()
                cr.reason = _prefilter_reason(cr, c, lit, exact)
    log.info("matcher: %d payload rules, %d buckets used of %d",
             len(program.rules), len(program.table), 1 << index_bits)
    return program


def _prefilter_reason(cr: ContentRule, c: Content, lit: bytes, exact: bool) -> str:
    """Why the host still verifies a prefiltered rule (the first reason that applies)."""
    if len(cr.contents) > 1:
        return f"several contents: {len(cr.contents)}"
    if len(lit) > WINDOW or c.chop is not None:
        return f"content longer than the {WINDOW}-byte window: {len(c.pattern)} bytes"
    if not c.nocase and _has_letters(c.pattern):
        return "case-sensitive letters (the window is case-folded)"
    if c.positional:
        return "positional modifiers"
    if cr.dsize is not None:
        return "dsize"
    header = header_any_ip(cr.rule)
    if header:
        return f"header: the matcher does not check it ({header})"
    if not exact:
        return "tag shorter than the window"
    return "bucket shared with a rule that needs verification"


def fast_pattern_bytes(cr: ContentRule) -> bytes:
    """The folded fast pattern (for reports)."""
    lit, _ = cr.fast_literal()
    return fold_bytes(lit)

"""Address and port expressions of a Suricata rule header, and the integer sets behind them.

Grammar (what Suricata accepts; whitespace is allowed around items inside brackets)::

    expr  := item
    item  := '!' item | '[' item (',' item)* ']' | atom
    atom  := 'any' | '$'NAME | address | port

Addresses: ``1.2.3.4``, ``10.0.0.0/8``, ``10.0.0.0/255.0.0.0``, ``2001:db8::/32``, ranges
``1.2.3.4-1.2.3.9``. Ports: ``80``, ``1024:65535``, ``1024:`` (to 65535), ``:1023`` (from 0).

Meaning, as Suricata's detect-engine-address.c and detect-engine-port.c evaluate it: the items of a
group are gathered into a positive and a negated list (brackets do not change this: ``[a,[b,!c]]``
is ``a``, ``b`` minus ``c``); a negated group or variable is evaluated first and its result
negated as a whole. The value is the positive list minus the negated one; where a family (IPv4,
IPv6) has negations but no positive entry, its positive list is that whole family: so
``!1.2.3.4`` is every IPv4 address but 1.2.3.4 and no IPv6 address at all. ``!any``, and an
expression that leaves nothing, are errors, as in Suricata.

Sets are lists of inclusive integer intervals (:class:`IntervalSet`), exact for any expression;
:func:`range_to_prefixes` turns an interval into the prefixes a TCAM stores.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

__all__ = ["RuleSyntaxError", "IntervalSet", "AddressSet", "parse_address", "parse_ports",
           "range_to_prefixes", "IPV4_MAX", "IPV6_MAX", "PORT_MAX"]

IPV4_MAX = (1 << 32) - 1
IPV6_MAX = (1 << 128) - 1
PORT_MAX = 0xFFFF
#: Suricata's limit on nested groups and variables (detect-engine-address.c "recursion limit").
MAX_DEPTH = 64


class RuleSyntaxError(ValueError):
    """A rule (or a variable it uses) that does not parse; ``str()`` is ``FILE:LINE:COL: message``.

    ``line`` and ``column`` are 1-based; ``file`` and ``line`` are filled in by the caller that
    knows them (the expression parsers know only the column).
    """

    def __init__(self, message: str, column: int | None = None, line: int | None = None,
                 file: str | None = None):
        super().__init__(message)
        self.message = message
        self.column = column
        self.line = line
        self.file = file

    def located(self, file: str, line: int) -> RuleSyntaxError:
        """This error with its file and line filled in."""
        self.file, self.line = file, line
        return self

    def __str__(self) -> str:
        where = [str(x) for x in (self.file, self.line, self.column) if x is not None]
        return ":".join(where + [" " + self.message]) if where else self.message


class IntervalSet:
    """An immutable set of integers in ``[0, top]`` kept as sorted, disjoint, non-adjacent intervals."""

    __slots__ = ("top", "intervals")

    def __init__(self, top: int, intervals=()):
        self.top = top
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(intervals):
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        self.intervals: tuple[tuple[int, int], ...] = tuple(merged)

    @classmethod
    def full(cls, top: int) -> IntervalSet:
        return cls(top, [(0, top)])

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __eq__(self, other) -> bool:
        return isinstance(other, IntervalSet) and (self.top, self.intervals) == (other.top, other.intervals)

    def __hash__(self) -> int:
        return hash((self.top, self.intervals))

    def __repr__(self) -> str:
        return f"IntervalSet({self.top:#x}, {list(self.intervals)!r})"

    def is_full(self) -> bool:
        return self.intervals == ((0, self.top),)

    def __or__(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(self.top, self.intervals + other.intervals)

    def complement(self) -> IntervalSet:
        out, start = [], 0
        for lo, hi in self.intervals:
            if lo > start:
                out.append((start, lo - 1))
            start = hi + 1
        if start <= self.top:
            out.append((start, self.top))
        return IntervalSet(self.top, out)

    def __sub__(self, other: IntervalSet) -> IntervalSet:
        return self & other.complement()

    def __and__(self, other: IntervalSet) -> IntervalSet:
        out, i, j = [], 0, 0
        a, b = self.intervals, other.intervals
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return IntervalSet(self.top, out)


def range_to_prefixes(lo: int, hi: int, width: int) -> list[tuple[int, int]]:
    """The fewest (value, prefix length) blocks that cover ``[lo, hi]`` exactly, in order.

    The classic TCAM range expansion: from ``lo``, take the largest power-of-two block aligned at
    ``lo`` that does not pass ``hi``. A ``width``-bit range needs at most ``2*width - 2`` prefixes
    (``[1, 2**width - 2]`` is the worst case).
    """
    if not 0 <= lo <= hi < (1 << width):
        raise ValueError(f"range [{lo}, {hi}] is not within {width} bits")
    out = []
    while lo <= hi:
        size = (lo & -lo) if lo else (1 << width)
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, width - (size.bit_length() - 1)))
        lo += size
    return out


@dataclass(frozen=True)
class AddressSet:
    """The value of an address expression: one :class:`IntervalSet` per IP family."""

    v4: IntervalSet
    v6: IntervalSet

    def networks(self, family: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The set of one family as the fewest CIDR prefixes, in address order."""
        cls, bits = (ipaddress.IPv4Address, 32) if family == 4 else (ipaddress.IPv6Address, 128)
        iv = self.v4 if family == 4 else self.v6
        out = []
        for lo, hi in iv.intervals:
            out += list(ipaddress.summarize_address_range(cls(lo), cls(hi)))
        assert all(n.max_prefixlen == bits for n in out)
        return out


# --- parsing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Atom:
    text: str
    column: int


@dataclass(frozen=True)
class _Not:
    item: object
    column: int


@dataclass(frozen=True)
class _Group:
    items: tuple
    column: int


def _tokens(text: str, column: int) -> Iterator[tuple[str, int]]:
    """(token, 1-based column): '[', ']', ',', '!' or an atom; whitespace separates and is dropped."""
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "[],!":
            yield c, column + i
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "[],!":
                j += 1
            yield text[i:j], column + i
            i = j
    yield "", column + len(text)


def _parse_tree(text: str, column: int, what: str):
    tokens = list(_tokens(text, column))
    pos = 0

    def item(depth: int):
        nonlocal pos
        tok, col = tokens[pos]
        if depth > MAX_DEPTH:
            raise RuleSyntaxError(f"{what}: more than {MAX_DEPTH} nested groups", col)
        if tok == "!":
            pos += 1
            return _Not(item(depth + 1), col)
        if tok == "[":
            pos += 1
            items = [item(depth + 1)]
            while tokens[pos][0] == ",":
                pos += 1
                items.append(item(depth + 1))
            tok2, col2 = tokens[pos]
            if tok2 != "]":
                found = f"{tok2!r}" if tok2 else "the end"
                raise RuleSyntaxError(f"{what}: expected ',' or ']' closing the group opened at column "
                                      f"{col}, found {found}", col2)
            pos += 1
            return _Group(tuple(items), col)
        if tok in ("]", ",", ""):
            found = f"{tok!r}" if tok else "nothing"
            raise RuleSyntaxError(f"{what}: expected an item, found {found}", col)
        pos += 1
        return _Atom(tok, col)

    tree = item(0)
    tok, col = tokens[pos]
    if tok:
        raise RuleSyntaxError(f"{what}: unexpected {tok!r} after the expression", col)
    return tree


class _Evaluator:
    """Suricata's positive/negated list evaluation, shared by addresses and ports."""

    def __init__(self, what: str, variables: Mapping[str, str], parse_atom: Callable, tops: tuple[int, ...]):
        self.what = what
        self.variables = variables
        self.parse_atom = parse_atom     # (text, column) -> tuple of IntervalSet, one per family
        self.tops = tops

    def empty(self) -> list[IntervalSet]:
        return [IntervalSet(t) for t in self.tops]

    def value(self, tree, resolving: tuple[str, ...] = ()) -> tuple[IntervalSet, ...]:
        pos, neg = self.empty(), self.empty()
        self._gather(tree, pos, neg, resolving)
        # Suricata rejects a negation that covers a whole IPv4 space / all ports ("!any").
        if neg[0].is_full():
            raise RuleSyntaxError(f"{self.what}: everything is negated (!any or equivalent); "
                                  "the rule could match nothing", getattr(tree, "column", None))
        out = []
        for p, n, top in zip(pos, neg, self.tops):
            if not p and n:
                p = IntervalSet.full(top)
            out.append(p - n)
        if not any(out):
            raise RuleSyntaxError(f"{self.what}: nothing is left after the negations", tree.column)
        return tuple(out)

    def _gather(self, node, pos, neg, resolving):
        if isinstance(node, _Group):
            for it in node.items:
                self._gather(it, pos, neg, resolving)
        elif isinstance(node, _Not):
            inner = node.item
            if isinstance(inner, _Atom) and not inner.text.startswith("$"):
                got = self._atom(inner)
            elif isinstance(inner, _Atom):
                # A negated group or variable: its own value first, negated as a whole.
                tree = self._expand(inner, resolving)
                with self._blame(inner):
                    got = self.value(tree, resolving + (inner.text,))
            else:
                got = self.value(inner, resolving)
            for i, s in enumerate(got):
                neg[i] = neg[i] | s
        elif node.text.startswith("$"):
            tree = self._expand(node, resolving)
            with self._blame(node):
                self._gather(tree, pos, neg, resolving + (node.text,))
        else:
            for i, s in enumerate(self._atom(node)):
                pos[i] = pos[i] | s

    def _atom(self, atom: _Atom) -> tuple[IntervalSet, ...]:
        if atom.text.lower() == "any":
            return tuple(IntervalSet.full(t) for t in self.tops)
        return self.parse_atom(atom.text, atom.column)

    def _expand(self, atom: _Atom, resolving: tuple[str, ...]):
        """The parsed value of variable ``atom`` (errors about its text go through :meth:`_blame`)."""
        name = atom.text[1:]
        if atom.text in resolving:
            raise RuleSyntaxError(f"{self.what}: variable {atom.text} refers to itself "
                                  f"({' -> '.join(resolving + (atom.text,))})", atom.column)
        if name not in self.variables:
            known = ", ".join(sorted(self.variables)) or "none"
            raise RuleSyntaxError(f"{self.what}: undefined variable {atom.text} (defined: {known})", atom.column)
        with self._blame(atom):
            return _parse_tree(str(self.variables[name]), 1, "")

    @contextlib.contextmanager
    def _blame(self, atom: _Atom):
        """Errors inside a variable's value point at the ``$NAME`` in the rule, naming the value."""
        try:
            yield
        except RuleSyntaxError as exc:
            value = str(self.variables.get(atom.text[1:], ""))
            detail = exc.message.removeprefix(f"{self.what}: ").removeprefix(": ")
            if not getattr(exc, "blamed", False):     # the innermost variable says where in its text
                detail += f" (at its character {exc.column})"
            err = RuleSyntaxError(f"{self.what}: in variable {atom.text} = {value!r}: {detail}", atom.column)
            err.blamed = True
            raise err from None


def _address_atom(text: str, column: int) -> tuple[IntervalSet, IntervalSet]:
    v4, v6 = IntervalSet(IPV4_MAX), IntervalSet(IPV6_MAX)
    try:
        if "-" in text:
            a, b = (ipaddress.ip_address(x) for x in text.split("-", 1))
            if a.version != b.version or int(a) > int(b):
                raise ValueError("a range needs two addresses of one family, low to high")
            lo, hi = int(a), int(b)
            version = a.version
        else:
            net = ipaddress.ip_network(text, strict=False)
            lo, hi, version = int(net.network_address), int(net.broadcast_address), net.version
    except ValueError as exc:
        raise RuleSyntaxError(f"bad address {text!r} ({exc})", column) from None
    if version == 4:
        return IntervalSet(IPV4_MAX, [(lo, hi)]), v6
    return v4, IntervalSet(IPV6_MAX, [(lo, hi)])


def _port_atom(text: str, column: int) -> tuple[IntervalSet]:
    lo_text, sep, hi_text = text.partition(":")
    try:
        lo = int(lo_text) if lo_text else 0
        hi = (int(hi_text) if hi_text else PORT_MAX) if sep else lo
        if not sep and not lo_text:
            raise ValueError
    except ValueError:
        raise RuleSyntaxError(f"bad port {text!r} (expected N, N:M, N: or :M)", column) from None
    if not 0 <= lo <= PORT_MAX or not 0 <= hi <= PORT_MAX:
        raise RuleSyntaxError(f"port {text!r} is out of range 0-65535", column)
    if lo > hi:
        raise RuleSyntaxError(f"port range {text!r} runs backwards", column)
    return (IntervalSet(PORT_MAX, [(lo, hi)]),)


def parse_address(text: str, variables: Mapping[str, str] | None = None, column: int = 1,
                  what: str = "address") -> AddressSet:
    """Evaluate an address expression; ``$NAME`` comes from ``variables`` (address-groups)."""
    ev = _Evaluator(what, variables or {}, _address_atom, (IPV4_MAX, IPV6_MAX))
    v4, v6 = ev.value(_parse_tree(text, column, what))
    return AddressSet(v4, v6)


def parse_ports(text: str, variables: Mapping[str, str] | None = None, column: int = 1,
                what: str = "port") -> IntervalSet:
    """Evaluate a port expression; ``$NAME`` comes from ``variables`` (port-groups)."""
    ev = _Evaluator(what, variables or {}, _port_atom, (PORT_MAX,))
    (ports,) = ev.value(_parse_tree(text, column, what))
    return ports

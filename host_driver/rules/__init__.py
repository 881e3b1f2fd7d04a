"""Suricata rule compiler, front end: rule files into classifier entries (issue 14; docs/rules.md).

::

    rules = read_rules("local.rules", *load_vars("vars.toml"), classifications=...)
    table = compile_rules(rules, capacity=256)
    table.entries        # ClassifierEntry list, first match wins
    table.rules          # every rule with verdict: offloaded / payload / host path / unsupported

Why these tools: splitting a rule's option list is the Suricata project's ``idstools.rule``
(escapes, quoting, ``metadata`` lists, as Suricata's own tooling reads them). idstools does not
parse the header: its regular expression takes each field up to the first ``]`` or space, so
nested groups and spaced groups come out wrong, newer actions (``rejectsrc``) make it return
nothing, and it gives no positions. The header is therefore tokenized here and its address and
port expressions parsed by a small recursive-descent parser (:mod:`.expr`, about 40 lines of
grammar) that keeps columns for errors and evaluates negations exactly as Suricata does; a
grammar library would add a dependency for a five-production grammar. Option values (``flags``,
``itype``, ``ttl``, ``flow``...) are parsed here from Suricata's documented syntax (:mod:`.parse`).

Nothing here imports :mod:`sim`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from host_driver.rules.compile import (
    ACTION_ORDER,
    DEFAULT_CAPACITY,
    ClassifierEntry,
    CompiledRules,
    Range,
    compile_rules,
)
from host_driver.rules.expr import (
    AddressSet,
    IntervalSet,
    RuleSyntaxError,
    parse_address,
    parse_ports,
    range_to_prefixes,
)
from host_driver.rules.parse import (
    DEFAULT_ADDRESS_GROUPS,
    DEFAULT_PORT_GROUPS,
    Classification,
    Rule,
    load_classifications,
    parse_rule,
    parse_rules,
    read_classifications,
    read_rules,
)

__all__ = ["read_rules", "parse_rules", "parse_rule", "compile_rules", "load_vars", "load_classifications",
           "read_classifications", "Classification",
           "Rule", "ClassifierEntry", "CompiledRules", "Range", "RuleSyntaxError", "AddressSet", "IntervalSet",
           "parse_address", "parse_ports", "range_to_prefixes", "ACTION_ORDER", "DEFAULT_CAPACITY",
           "DEFAULT_ADDRESS_GROUPS", "DEFAULT_PORT_GROUPS"]


def load_vars(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(address groups, port groups) from a TOML file laid out like suricata.yaml's ``vars``::

        [address-groups]
        HOME_NET = "[10.0.0.0/8]"
        [port-groups]
        HTTP_PORTS = "[80,8080]"

    Variables it does not set keep Suricata's defaults. Bad TOML, an unknown table or a value that
    is not a string or integer raise :class:`RuleSyntaxError` naming the file (and line, column).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RuleSyntaxError(f"cannot read vars file ({exc.strerror or exc})", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise RuleSyntaxError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)" or "(at end of document)".
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        lines = text.split("\n")
        line, column = (int(m.group(1)), int(m.group(2))) if m else (len(lines), len(lines[-1]) + 1)
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise RuleSyntaxError(f"TOML syntax error: {msg}", column, line, str(path)) from None
    out: list[dict[str, str]] = []
    for table in ("address-groups", "port-groups"):
        values = doc.pop(table, {})
        if not isinstance(values, dict):
            raise RuleSyntaxError(f"[{table}] must be a table", file=str(path))
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise RuleSyntaxError(f"[{table}] {name} must be a string or an integer, not {value!r}",
                                      file=str(path))
        out.append({name: str(value) for name, value in values.items()})
    if doc:
        raise RuleSyntaxError(f"unknown table or key {', '.join(map(repr, doc))} (expected [address-groups] "
                              "and [port-groups])", file=str(path))
    return out[0], out[1]

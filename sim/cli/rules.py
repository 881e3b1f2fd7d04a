"""``secnic rules check``: what of a Suricata rule file the NIC would offload, and what it costs.

::

    secnic rules check FILE.rules [--vars vars.toml] [--classification FILE] [--capacity N] [--all]

Prints one line per rule (sid, action, verdict, classifier entries, ternary entries, reason) for
small files; for more than :data:`FULL_TABLE_MAX` rules a summary and the rules that are not
offloaded, grouped by reason (``--all`` prints every rule). Then the capacity used: classifier entries (ranges matched
as ranges), and ternary entries (ranges split into prefixes), both against ``--capacity``.
docs/rules.md explains the verdicts.

Exit status: 0 when the file compiles (whatever the verdicts); 2 on bad input, a syntax error
printed as ``FILE:LINE:COL: message`` on stderr. Nothing is written anywhere.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["register", "cmd_rules_check", "format_report", "format_matcher"]

#: Files with more rules than this get a summary instead of one line per rule.
FULL_TABLE_MAX = 40
#: Sids shown per group in the summary.
SIDS_PER_GROUP = 8


def register(add) -> None:
    """Add the ``rules`` command (subcommand ``check``) through ``add(name, **kw)``."""
    from host_driver.rules import DEFAULT_CAPACITY
    ap = add("rules", help="Suricata rules: what the NIC offloads (rules check)",
             description="Compile Suricata rules for the NIC's classifier. See docs/rules.md.")
    cmds = ap.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = cmds.add_parser("check", help="per rule: offloaded / payload / host path / unsupported, and "
                                          "the classifier capacity used")
    check.add_argument("file", metavar="FILE.rules", help="Suricata rule file")
    check.add_argument("--vars", metavar="vars.toml",
                       help="[address-groups] and [port-groups] tables (default: Suricata's suricata.yaml vars)")
    check.add_argument("--classification", metavar="FILE",
                       help="classification.config for classtype priorities (default: the one beside "
                            "FILE.rules if any, else every classtype has priority 3)")
    check.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, metavar="N",
                       help=f"classifier entries (default: {DEFAULT_CAPACITY})")
    check.add_argument("--all", action="store_true", help="one line per rule even for large files (default: off)")
    ap.set_defaults(func=cmd_rules_check)


def cmd_rules_check(args) -> int:
    from host_driver.rules import RuleSyntaxError, compile_rules, load_classifications, load_vars, read_rules
    from sim.cli.main import BadInput
    if args.capacity < 0:
        raise BadInput(f"--capacity must be at least 0, not {args.capacity}")
    path = Path(args.file)
    if not path.is_file():
        raise BadInput(f"{path}: no such rule file")
    try:
        address_groups, port_groups = load_vars(args.vars) if args.vars else ({}, {})
        cls_path = Path(args.classification) if args.classification else path.parent / "classification.config"
        if args.classification and not cls_path.is_file():
            raise BadInput(f"{cls_path}: no such classification file")
        classifications = load_classifications(cls_path) if cls_path.is_file() else None
        rules = read_rules(path, address_groups, port_groups, classifications)
        table = compile_rules(rules, capacity=args.capacity)    # content values are checked here
    except RuleSyntaxError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    print(format_report(str(path), table, full=args.all or len(rules) <= FULL_TABLE_MAX))
    return 0


def format_report(name: str, table, full: bool) -> str:
    """The text ``rules check`` prints for a compiled rule set."""
    counts = table.verdicts
    lines = [f"{name}: {len(table.rules)} rules: " + ", ".join(
        f"{counts.get(v, 0)} {v}" for v in ("offloaded", "payload", "host path", "unsupported"))]
    if full:
        lines.append(f"{'sid':>10}  {'action':<10} {'verdict':<11} {'entries':>7} {'ternary':>7}  reason")
        for r in table.rules:
            n = table.entries_by_sid.get((r.gid, r.sid), "")
            t = table.ternary_by_sid.get((r.gid, r.sid), "")
            lines.append(f"{r.sid:>10}  {r.action:<10} {r.verdict:<11} {n!s:>7} {t!s:>7}  {r.reason}")
    else:
        groups = defaultdict(list)
        for r in table.rules:
            if r.verdict != "offloaded":
                groups[(r.verdict, r.reason)].append(r.sid)
        if groups:
            lines.append("not offloaded, by reason:")
            lines.append(f"{'rules':>6}  {'verdict':<11} {'reason':<40}  sids")
            for (verdict, reason), sids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                shown = ", ".join(map(str, sids[:SIDS_PER_GROUP])) + (", ..." if len(sids) > SIDS_PER_GROUP else "")
                lines.append(f"{len(sids):>6}  {verdict:<11} {reason:<40}  {shown}")
    lines += format_matcher(table.matcher, full)
    lines.append(f"capacity: {len(table.entries)} of {table.capacity} entries with range matching; "
                 f"{table.ternary_entries} of {table.capacity} as ternary (TCAM) entries after range expansion")
    return "\n".join(lines)


def format_matcher(program, full: bool) -> list[str]:
    """The payload rules' matcher statuses (docs/matcher.md): fully offloaded, prefiltered in hardware
    and verified on the host, or host only, each with its reason; nothing when there are none."""
    if program is None or not program.rules:
        return []
    groups = program.by_status()
    lines = [f"payload matcher: {len(program.rules)} rules: " + ", ".join(
        f"{len(groups[s])} {s}" for s in groups) + f"; {len(program.table)} of {program.capacity} literals"]
    if full:
        for r in program.rules:
            lines.append(f"{r.sid:>10}  {r.status:<10}  {r.reason}")
    else:
        by_reason = defaultdict(list)
        for r in program.rules:
            by_reason[(r.status, r.reason.split(":")[0])].append(r.sid)
        for (status, reason), sids in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            shown = ", ".join(map(str, sids[:SIDS_PER_GROUP])) + (", ..." if len(sids) > SIDS_PER_GROUP else "")
            lines.append(f"{len(sids):>6}  {status:<10}  {reason:<50}  {shown}")
    return lines

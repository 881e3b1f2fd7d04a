"""``python -m sim.flows.conformance`` (``make conformance``): Suricata's own tests through ``secnic run``.

Every case of ../shared/data/suricata-verify (its INDEX.json: the pcap, the rules, the sids Suricata
fires) goes through ``secnic run --rules`` on one engine (the golden model by default; ``--engine
verilator`` or ``icarus`` runs the gateware), and its eve.json is held to the expected alerts and
to Suricata's EVE schema (../shared/data/suricata-eve-schema/schema.json). Each case ends as

* **pass**: every expected sid fired as often as Suricata fires it, every eve.json line is valid;
* **fail**: a sid missing, extra or miscounted, an invalid line, or ``secnic run`` failing;
* **n/a** with the reason, decided from the case before anything runs: a rule the NIC cannot take
  (the rule compiler's own verdict and reason: an app-layer keyword, stream reassembly, ...), a
  ``suricata.yaml`` that changes the action order, a capture that is not Ethernet nor raw IP; or a
  case in :data:`NEEDS`, whose expected alerts depend on something the NIC does not do
  (decapsulation, defragmentation, app-layer protocol detection; each investigated against
  Suricata's documented behaviour): those still run, and their reason says how that went.

Payload (``content``, ``dsize``) rules run as ``secnic run`` runs them: compiled for the NIC's
matcher, settled hits alerted by the NIC, punted frames verified by the host path with the
record's flow bits (docs/security.md, "The payload matcher in the stage").

Counting follows Suricata's inspection model where it differs from "one alert per matching packet":
**IP-only rules** (no option beyond metadata, both ports ``any``) are inspected on the first packet
of each flow direction only (Suricata's detect-engine-iponly.c, ``FLOW_TOSERVER_IPONLY_SET``), so
their alerts are counted once per (protocol, source, destination, ports) direction; every other rule
counts per packet. Raw-IP captures (link types 12, 14, 101, 228, 229) get an Ethernet header of
fixed addresses in front of each packet; nothing else is changed.

Writes ``docs/conformance.md`` (the table, with ``--doc``), ``build/conformance/<engine>.json`` and
each case's run files under ``build/conformance/<engine>/<case>/``. Exit status 1 when a tier-A or
tier-B case fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from host_driver.rules import read_rules
from host_driver.rules.expr import RuleSyntaxError
from sim.build import BUILD_ROOT

__all__ = ["CaseResult", "cases", "run_case", "expected_counts", "ip_only", "action_order", "main", "DATA", "NEEDS"]

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[2]
#: The shared data directory (the repository's sibling ``shared/data``; SECNIC_SHARED_DATA overrides).
DATA = _REPO.parent / "shared" / "data"
#: Rule options that say nothing about the packet (a rule with only these is IP-only in Suricata).
#: Suricata's default action order (suricata.yaml ``action-order``), the one the rule compiler uses.
DEFAULT_ACTION_ORDER = ["pass", "drop", "reject", "alert"]
_METADATA_OPTIONS = {"msg", "sid", "rev", "gid", "classtype", "priority", "metadata", "reference", "target"}
#: Link types whose packets start with the IP header: DLT_RAW (12, 14 on some systems, 101),
#: LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229).
_RAW_IP_LINKTYPES = {12, 14, 101, 228, 229}
_ETH_SRC = bytes.fromhex("020000000001")
_ETH_DST = bytes.fromhex("020000000002")
#: The port the captures enter on: a VM's port (a physical port would drop unpadded captures as runts).
IN_PORT = "vm1"


#: Cases whose expected alerts need what the NIC does not do, investigated one by one (Suricata's
#: documented behaviour is the reference): they run, but count as not applicable.
NEEDS = {
    **{f"bug-4571-0{i}": f"needs tunnel decapsulation: the capture is {kind}, and Suricata (8) matches the "
                         "rule on the inner packet; the parser stops at the outer IP header"
       for i, kind in ((1, "IPv4 in IPv4"), (3, "IPv6 in IPv6"), (4, "IPv6 in IPv4"), (6, "IPv4 in IPv6"))},
    "decode-nsh-type1": "needs NSH decapsulation: the rule matches the UDP packet inside NSH (ethertype 0x894F), "
                        "where the parser stops",
    **{f"defrag/{name}": "needs IP defragmentation: Suricata matches dsize on the reassembled datagram; the NIC "
                         "sees each fragment" + extra
       for name, extra in (("bug-6887-defrag-ipv6-tcp", ""), ("bug-6887-defrag-eth-vlan-ipv6-tcp", ""),
                           ("bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data",
                            " (inside a GRE/PPP tunnel the parser does not decapsulate either)"))},
    "smb1-03-midstream": "needs app-layer protocol detection: the capture starts midstream with the server's "
                         "packet, and Suricata's SMB detection turns the flow round (its devguide, \"Protocol "
                         "detection\": in the midstream case it can reverse a flow's direction); the flow table "
                         "keeps the first sender as the client, so flow:to_server does not hold",
}


@dataclass
class CaseResult:
    """One case's outcome: ``pass`` / ``fail`` / ``n/a``, why, and the alert counts compared."""
    test: str
    tier: str
    outcome: str
    reason: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    eve_lines: int = 0


def data_dir() -> Path:
    import os
    env = os.environ.get("SECNIC_SHARED_DATA")
    return Path(env) if env else DATA


def cases(data: Path | None = None) -> list[dict]:
    """The INDEX.json entries (empty when the data is absent)."""
    index = (data or data_dir()) / "suricata-verify" / "INDEX.json"
    if not index.is_file():
        return []
    return json.loads(index.read_text())


def expected_counts(case: dict) -> dict[str, tuple[int, bool]]:
    """sid (or ``any``) -> (count, at_least) from the case's ``expected_alerts`` (``sid:n`` or ``sid:n+``)."""
    out: dict[str, tuple[int, bool]] = {}
    for item in case["expected_alerts"]:
        m = re.fullmatch(r"(\w+):(\d+)(\+?)(\[.*\])?", item)
        if m is None:
            raise ValueError(f"{case['test']}: cannot read expected alert {item!r}")
        sid, n, plus = m.group(1), int(m.group(2)), bool(m.group(3))
        if sid == "any" and sid in out:       # several `any` checks: keep the strictest
            n = max(n, out[sid][0])
        out[sid] = (n, plus)
    return out


def ip_only(rule) -> bool:
    """Suricata inspects this rule once per flow direction: metadata options only, both ports any."""
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', rule.text[rule.text.find("("):])    # quoted values out
    options = set(re.findall(r"[;(]\s*([a-z_.]+)\s*[:;)]", body))
    full = (0, 65535)
    return options <= _METADATA_OPTIONS and list(rule.sport.intervals) == [full] == list(rule.dport.intervals)


def action_order(overlay: Path) -> list[str] | None:
    """The ``action-order:`` list of a case's suricata.yaml, or None without one."""
    if not overlay.is_file():
        return None
    order, inside = None, False
    for line in overlay.read_text(errors="replace").splitlines():
        if re.match(r"action-order:\s*$", line):
            order, inside = [], True
        elif inside and re.match(r"\s*-\s*\w+", line):
            order.append(line.split("-", 1)[1].strip())
        elif inside and line.strip():
            inside = False
    return order


def _not_applicable(case: dict, folder: Path) -> str:
    """Why the NIC cannot run this case ('' when it can)."""
    order = action_order(folder / "suricata.yaml")
    if order is not None and order != DEFAULT_ACTION_ORDER:
        return f"its suricata.yaml changes the action order to {', '.join(order)} (the NIC takes Suricata's default)"
    try:
        rules = read_rules(folder / case["rules"])
    except RuleSyntaxError as exc:
        return f"the rule compiler cannot read it: {exc}"
    for r in rules:
        if r.proto == "tcp-stream":
            return f"sid {r.sid} is a tcp-stream rule: needs stream reassembly"
        if r.verdict not in ("offloaded", "payload"):
            return f"sid {r.sid}: {r.verdict} ({r.reason})"
    return ""


def _ethernet_capture(src: Path, dst: Path) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` as an Ethernet capture (raw IP gets a header); returns (link type
    read, frames). Another link type writes nothing."""
    from scapy.utils import RawPcapReader

    from sim.run.pcapio import _ts_ns, write_pcap
    reader = RawPcapReader(str(src))
    try:
        linktype = reader.linktype
        nano = getattr(reader, "nano", False)
        packets = [(bytes(data), _ts_ns(meta, nano)) for data, meta in reader]
    finally:
        reader.close()
    if linktype != 1 and linktype not in _RAW_IP_LINKTYPES:
        return linktype, len(packets)
    if linktype != 1:
        packets = [(_ETH_DST + _ETH_SRC + (b"\x86\xdd" if data and data[0] >> 4 == 6 else b"\x08\x00") + data, ts)
                   for data, ts in packets]
    write_pcap(dst, packets)
    return linktype, len(packets)


def _flow_direction(event: dict) -> tuple:
    return (event.get("proto"), event.get("src_ip"), event.get("src_port"), event.get("dest_ip"),
            event.get("dest_port"))


def _eve_validator(data: Path):
    path = data / "suricata-eve-schema" / "schema.json"
    if not path.is_file():
        return None
    import jsonschema
    doc = json.loads(path.read_text())
    return jsonschema.validators.validator_for(doc)(doc)


def run_case(case: dict, engine: str, out: Path, *, data: Path | None = None, validator=None) -> CaseResult:
    """Run one case through ``secnic run`` into ``out/<test>`` and judge it (module docstring)."""
    data = data or data_dir()
    folder = data / "suricata-verify" / case["test"]
    result = CaseResult(case["test"], case["tier"], "n/a",
                        expected={k: f"{n}{'+' if plus else ''}" for k, (n, plus) in expected_counts(case).items()})
    why = _not_applicable(case, folder)
    if why:
        result.reason = why
        return result
    run_dir = out / case["test"].replace("/", "__")
    run_dir.mkdir(parents=True, exist_ok=True)
    pcap = run_dir / "input.pcap"
    linktype, result.frames = _ethernet_capture(folder / case["pcap"], pcap)
    if not pcap.is_file():
        result.reason = f"link type {linktype}: neither Ethernet nor raw IP"
        return result
    from sim.cli.main import main as secnic
    args = ["run", "--in", f"{IN_PORT}={pcap}", "--rules", str(folder / case["rules"]), "--engine", engine,
            "--out", str(run_dir / "out")]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        rc = secnic(args)
    if rc != 0:
        result.outcome, result.reason = "fail", f"secnic run exited {rc}: {stderr.getvalue().strip()[-300:]}"
        return result
    events = [json.loads(line) for line in (run_dir / "out" / "eve.json").read_text().splitlines() if line.strip()]
    result.eve_lines = len(events)
    if validator is not None:
        for n, event in enumerate(events, 1):
            error = next(iter(validator.iter_errors(event)), None)
            if error is not None:
                result.outcome, result.reason = "fail", f"eve.json line {n} is not valid EVE: {error.message}"
                return result
    once_per_direction = {r.sid for r in read_rules(folder / case["rules"]) if ip_only(r)}
    fired: Counter = Counter()
    seen = set()
    for event in events:
        if event.get("event_type") != "alert":
            continue
        sid = event["alert"]["signature_id"]
        if sid in once_per_direction:
            key = (sid, _flow_direction(event))
            if key in seen:
                continue
            seen.add(key)
        fired[sid] += 1
    result.fired = {str(k): v for k, v in sorted(fired.items())}
    wrong = []
    for sid, (n, at_least) in expected_counts(case).items():
        got = sum(fired.values()) if sid == "any" else fired[int(sid)]
        if got < n or (not at_least and got != n):
            wrong.append(f"sid {sid}: {got} alerts, expected {n}{'+' if at_least else ''}")
    result.outcome = "fail" if wrong else "pass"
    result.reason = "; ".join(wrong)
    if case["test"] in NEEDS:
        ran = result.outcome + (f" ({result.reason})" if result.reason else "")
        result.outcome, result.reason = "n/a", f"{NEEDS[case['test']]}; run anyway: {ran}"
    return result


def table(results: list[CaseResult]) -> str:
    lines = ["| case | tier | outcome | reason | expected | fired |", "|---|---|---|---|---|---|"]
    for r in results:
        exp = ", ".join(f"{k}:{v}" for k, v in r.expected.items())
        got = ", ".join(f"{k}:{v}" for k, v in r.fired.items())
        reason = r.reason.replace("|", "\\|")
        lines.append(f"| {r.test} | {r.tier} | {r.outcome} | {reason} | {exp} | {got} |")
    return "\n".join(lines)


def summary(results: list[CaseResult]) -> str:
    by = Counter((r.tier, r.outcome) for r in results)
    tiers = sorted({r.tier for r in results})
    lines = ["| tier | pass | fail | n/a |", "|---|---|---|---|"]
    for t in tiers:
        lines.append(f"| {t} | {by[t, 'pass']} | {by[t, 'fail']} | {by[t, 'n/a']} |")
    return "\n".join(lines)


def other_engines(out: Path, engine: str, results: list[CaseResult]) -> str:
    """A paragraph on the other engines' last runs into ``out`` (their ``<engine>.json``): the same
    outcome per case or not, and their wall time."""
    mine = {r.test: (r.outcome, r.fired) for r in results}
    lines = []
    for other in ("model", "verilator", "icarus"):
        path = out / f"{other}.json"
        if other == engine or not path.is_file():
            continue
        theirs = {r["test"]: (r["outcome"], r["fired"]) for r in json.loads(path.read_text())}
        differ = sorted(t for t in mine if theirs.get(t) != mine[t])
        wall = out / f"{other}.wall"
        took = f" in {wall.read_text().strip()} s" if wall.is_file() else ""
        passed = sum(o == "pass" for o, _ in theirs.values())
        lines.append(f"The {other} engine's last run{took}: {passed} pass; "
                     + ("every case has the same outcome and the same alert counts."
                        if not differ else f"cases that differ: {', '.join(differ)}."))
    return "\n".join(lines) + "\n\n" if lines else ""


_DOC_HEAD = """# Suricata conformance

Generated by `make conformance` (`python -m sim.flows.conformance --doc`; module docstring of
`sim/flows/conformance.py` for the rules of judgement): every case of ../shared/data/suricata-verify
(80 of OISF/suricata-verify's tests, chosen there for header and literal matching; its INDEX.md) run
through `secnic run --rules` on the {engine} engine, the sids in eve.json held to the ones Suricata
fires, every eve.json line validated against Suricata's EVE schema.

Not applicable means the NIC cannot take the case as it stands, for the reason given; the target
is every tier-A and tier-B case whose semantics are per packet.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.flows.conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="model", choices=("model", "verilator", "icarus"))
    parser.add_argument("--cases", nargs="*", metavar="NAME", help="only these cases (default: all)")
    parser.add_argument("--out", type=Path, default=BUILD_ROOT / "conformance")
    parser.add_argument("--doc", nargs="?", const=_REPO / "docs" / "conformance.md", type=Path,
                        help="write the table to this file (default docs/conformance.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    data = data_dir()
    todo = [c for c in cases(data) if not args.cases or c["test"] in args.cases]
    if not todo:
        print(f"conformance: no suricata-verify cases under {data} (absent, or --cases matched none)", file=sys.stderr)
        return 2
    validator = _eve_validator(data)
    if validator is None:
        print(f"conformance: Suricata's EVE schema is absent under {data}; eve.json is not validated", file=sys.stderr)
    out = args.out / args.engine
    results = []
    start = time.monotonic()
    for i, case in enumerate(todo, 1):
        r = run_case(case, args.engine, out, data=data, validator=validator)
        results.append(r)
        print(f"[{i}/{len(todo)}] {r.test}: {r.outcome}{' (' + r.reason + ')' if r.reason else ''}",
              file=sys.stderr, flush=True)
    wall = time.monotonic() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.engine}.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    print(summary(results))
    print(f"{len(results)} cases in {wall:.0f} s on the {args.engine} engine")
    (args.out / f"{args.engine}.wall").write_text(f"{wall:.0f}\n")
    if args.doc:
        args.doc.write_text(_DOC_HEAD.format(engine=args.engine) + summary(results) + "\n\n"
                            + other_engines(args.out, args.engine, results) + table(results) + "\n")
    failed = [r.test for r in results if r.outcome == "fail" and r.tier in ("A", "B")]
    if failed:
        print(f"failed (tier A/B): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

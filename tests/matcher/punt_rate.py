"""Punt rate of the matcher with the emerging-exploit payload rules loaded: on every suricata-verify
capture, and on a generated mix. Prints the figures docs/matcher.md records::

    .venv/bin/python -m tests.matcher.punt_rate [--frames N]

A frame is punted when the matcher's result says so (a hit the hardware cannot settle, or more hits
than its slots). Rules the compiler left "host only" punt every frame their header matches; that
share is printed apart, because it depends on the rule set, not on the matcher.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from host_driver.inspect import HostInspector, payload_bounds
from host_driver.model.matcher import MatcherModel
from host_driver.model.nic import parse_frame
from host_driver.rules import read_rules
from host_driver.rules.content import compile_content
from tests.matcher.test_suricata_verify import DATA, frames

RULES = DATA.parent / "rules" / "emerging-exploit.rules"
HTTP_WORDS = [b"GET", b"POST", b"HTTP/1.1", b"Host:", b"User-Agent:", b"Mozilla/5.0", b"Accept:", b"text/html",
              b"Content-Length:", b"Cookie:", b"session=", b"index.html", b"/api/v1/", b"json", b"200 OK"]


def generated_mix(n: int, plant: list[bytes] = (), seed: int = 1):
    """Frames: a third random bytes, a third HTTP-like text, a third zero-filled, 64..1514 bytes;
    one in 50 carries one of ``plant`` (an attack) at a random place."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    rng = random.Random(seed)
    for i in range(n):
        size = rng.choice([6, 100, 512, 1460, rng.randrange(6, 1460)])
        kind = i % 3
        if kind == 0:
            payload = rng.randbytes(size)
        elif kind == 1:
            payload = b" ".join(rng.choice(HTTP_WORDS) for _ in range(size // 6))[:size]
        else:
            payload = bytes(size)
        if plant and i % 50 == 49:
            lit = rng.choice(plant)
            at = rng.randrange(0, len(payload) + 1)
            payload = payload[:at] + lit + payload[at:]
        yield bytes(Ether() / IP(src="10.0.0.1", dst="192.168.0.9") / TCP(sport=40000, dport=80) / payload)


def punt_figures(program, model, host, raw_frames):
    n = punted = overflow = host_only = hits = confirmed = 0
    for frame in raw_frames:
        meta = parse_frame(frame, physical=False, header_window=256, max_frame=16383)
        bounds = payload_bounds(frame, meta)
        if bounds is None:
            continue
        n += 1
        result = model.frame(frame, bounds[0], bounds[1] - bounds[0])
        punted += result.punt
        if result.punt:     # the host finds a candidate rule's payload part (contents, dsize) satisfied
            confirmed += bool(host.matches(frame[bounds[0]:bounds[1]], program.candidates(result)))
        overflow += result.overflow
        hits += len(result.hits)
        host_only += any(host.header_matches(r, meta) for r in program.host_only())
    return {"frames with payload": n, "punted by the matcher": punted, "of which overflow": overflow,
            "punted, a candidate's payload part matches": confirmed,
            "hits": hits, "matched by a host-only rule's header": host_only,
            "punt rate": round(punted / n, 4) if n else None,
            "punted, no candidate matches": punted - confirmed,
            "punt rate without a match": round((punted - confirmed) / n, 4) if n else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000, help="generated frames (default: 3000)")
    args = ap.parse_args(argv)
    program = compile_content(read_rules(RULES))
    model = MatcherModel(64, index_bits=program.index_bits)
    model.load(program.table)
    host = HostInspector(program.rules)
    verify = []
    for case in json.loads((DATA / "INDEX.json").read_text()):
        linktype, raw = frames(Path(DATA / case["test"] / case["pcap"]))
        if linktype == 1:
            verify += raw
    attacks = [r.contents[r.fast].pattern for r in program.rules if r.status == "prefilter"]
    print("rules:", {s: len(v) for s, v in program.by_status().items()}, "literals:", len(program.table))
    print("suricata-verify captures (Ethernet):", punt_figures(program, model, host, verify))
    mix = generated_mix(args.frames, attacks)
    print(f"generated mix ({args.frames} frames):", punt_figures(program, model, host, mix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

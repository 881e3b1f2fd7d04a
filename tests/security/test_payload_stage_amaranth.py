"""The payload stage (hdl/security/payload.py) in amaranth.sim: the matcher fed from the NIC pipeline.

Frames are made by scapy; their parser records come from the golden model's parser
(``host_driver.model.nic.parse_frame``) and reach the stage as the pipelined parser delivers them,
13 cycles after the frame's last beat (or later, up to the sequential parser's bound), while the
next frames' beats keep coming at one beat per cycle. Per frame:

* the stage's result equals :class:`MatcherModel`'s for the same frame and the payload bounds of
  ``host_driver.inspect.payload_bounds`` (the host path's definition: IP payload, no padding);
* Hyperscan (through ``HostInspector``) finds no literal occurrence that the stage missed;
* frames without a payload (not IP, no payload offset, malformed, rx_error) are ``skipped``;
* a frame longer than the FIFO is punted, ``too_long``, and counted; the frames after it are not
  disturbed.
"""

from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from hdl.config import NicConfig
from hdl.packet.meta import make_parsed_layout
from hdl.security.payload import PayloadStage
from hdl.security.regs import MATCHER_COUNTERS
from host_driver.inspect import HostInspector, payload_bounds
from host_driver.model.matcher import FrameResult, Hit, MatcherModel
from host_driver.model.nic import parse_frame
from host_driver.rules import parse_rules
from host_driver.rules.content import compile_content

CFG = NicConfig()
LANES = CFG.data_width // 8
INDEX_BITS = 9            # a small table: 512 bucket writes to load it
PARSER_LATENCY = 13       # hdl.parser.pipelined.Parser.latency: the record after the last beat
ALPHABET = b"abcdeABCDE\x00\xff|;"


def compile_literals(rng, n):
    """Single-content rules of random literals (4 to 9 bytes, half of them nocase) through the real
    compiler; literals the compiler sends to the host (every window taken) are left out."""
    literals = [(bytes(rng.choice(ALPHABET) for _ in range(rng.choice((4, 5, 6, 9)))), rng.random() < 0.5)
                for _ in range(n)]

    def build(lits):
        text = "".join(f'alert ip any any -> any any (content:"|{lit.hex(" ")}|";{" nocase;" if nc else ""} '
                       f"sid:{i + 1};)\n" for i, (lit, nc) in enumerate(lits))
        return compile_content(parse_rules(text), index_bits=INDEX_BITS)

    program = build(literals)
    literals = [lit for lit, r in zip(literals, program.rules) if r.status != "host only"]
    return literals, build(literals)


def plant(rng, literals, size):
    """A random payload of ``size`` bytes with literals at its first and last byte and inside,
    nocase ones in mixed case."""
    payload = bytearray(rng.choice(ALPHABET) for _ in range(size))
    for where in ("first", "last", "any", "any"):
        lit, nocase = rng.choice(literals)
        if len(lit) > size or rng.random() < 0.25:
            continue
        if nocase:
            lit = bytes(b ^ 0x20 if chr(b).isalpha() and rng.random() < 0.5 else b for b in lit)
        at = {"first": 0, "last": size - len(lit)}.get(where, rng.randrange(size - len(lit) + 1))
        payload[at:at + len(lit)] = lit
    return bytes(payload)


def random_frame(rng, literals, program=None):
    """(frame bytes, rx_error): IPv4/IPv6 with TCP/UDP/ICMP, VLAN tags, IP options, an IPv6
    extension header, Ethernet padding or a trailer after the IP datagram that continues a literal
    begun at the payload's end (its hashed window straddling the end, given ``program``), and frames
    without a payload for the matcher (ARP, other ethertypes, later fragments, malformed lengths,
    rx_error)."""
    size = rng.choice([0, 1, 3, 4, 7, 8, 9, rng.randrange(0, 40), rng.randrange(0, 300)])
    payload = plant(rng, literals, size)
    trailer = b""
    tail = rng.choice(["none", "none", "pad", "straddle"])
    if tail == "straddle" and program is not None:
        i = rng.randrange(len(literals))
        lit, cut = literals[i][0], program.rules[i].placement.window_offset + 3 + rng.choice((0, 0, -1, 1))
        cut = min(max(cut, 1), len(lit) - 1, size)
        payload = payload[:size - cut] + lit[:cut]
        trailer = lit[cut:] + bytes(rng.randrange(3))
    kind = rng.choice(["v4tcp", "v4udp", "v4icmp", "v4opt", "v6tcp", "v6udp", "v6hbh", "arp", "other",
                       "fragment", "badlen", "v4udp", "v6tcp"])
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for _ in range(rng.choice([0, 0, 1, 2])):
        l2 = l2 / Dot1Q(vlan=rng.randrange(1, 4095))
    v4 = IP(src="10.0.0.1", dst="10.0.0.2")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    pkt = {
        "v4tcp": lambda: l2 / v4 / TCP(sport=1000, dport=80, flags="PA") / payload,
        "v4udp": lambda: l2 / v4 / UDP(sport=53, dport=5353) / payload,
        "v4icmp": lambda: l2 / v4 / ICMP() / payload,
        "v4opt": lambda: l2 / IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_NOP()] * 4) / UDP() / payload,
        "v6tcp": lambda: l2 / v6 / TCP(sport=1000, dport=443) / payload,
        "v6udp": lambda: l2 / v6 / UDP() / payload,
        "v6hbh": lambda: l2 / v6 / IPv6ExtHdrHopByHop() / UDP() / payload,
        "arp": lambda: l2 / ARP(psrc="10.0.0.1", pdst="10.0.0.2") / payload,
        "other": lambda: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88B5) / payload,
        "fragment": lambda: l2 / IP(src="10.0.0.1", dst="10.0.0.2", frag=8, proto=17) / payload,
        "badlen": lambda: l2 / IP(src="10.0.0.1", dst="10.0.0.2", len=1400) / UDP() / payload,
    }[kind]()
    frame = bytes(pkt) + trailer
    if tail == "pad" and len(frame) < 60:
        frame += bytes(60 - len(frame))             # Ethernet padding: not payload
    return frame, rng.random() < 0.05


def parse(cfg, frame):
    return parse_frame(frame, physical=False, header_window=cfg.header_window, max_frame=cfg.max_frame)


def expected_result(cfg, model, frame, rx_error, too_long=False):
    """The stage's result for one frame, from the model and the host path's payload bounds."""
    meta = parse(cfg, frame)
    bounds = payload_bounds(frame, meta)
    skipped = bounds is None or bool(meta["malformed"]) or rx_error
    if skipped:
        return FrameResult(), True, too_long, None
    if too_long:
        return FrameResult(punt=True), False, True, bounds
    return model.frame(frame, bounds[0], bounds[1] - bounds[0]), False, False, bounds


def simulate(dut, program, frames, *, delays=None, gap=0):
    """Load ``program``'s table through ``table_w`` and ``commit``, then send ``frames`` (bytes,
    rx_error) at one beat per cycle with at most one frame per 8 cycles (``gap`` idle cycles after
    each frame), each record ``delays[i]`` (default: the pipelined parser's 13) cycles after the
    frame's last beat. Returns ([(FrameResult, skipped, too_long)], event totals, [(record cycle,
    result cycle)])."""
    cfg = dut.config
    lanes = cfg.data_width // 8
    record_layout = make_parsed_layout(cfg.port_bits)
    delays = delays or [PARSER_LATENCY] * len(frames)
    results, cycles = [], []
    events = dict.fromkeys((c.value for c in MATCHER_COUNTERS), 0)
    beats, records = {}, {}
    t = 0
    last_record = -1
    for (frame, rx_error), delay in zip(frames, delays):
        start = t
        for k in range(0, len(frame), lanes):
            chunk = frame[k:k + lanes]
            beats[t] = (int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, k + lanes >= len(frame))
            t += 1
        meta = parse(cfg, frame)
        at = max(t - 1 + delay, last_record + 1)
        records[at] = record_layout.const({"meta": meta, "in_port": 0, "rx_error": int(rx_error)}).as_bits()
        last_record = at
        t = max(t, start + 8) + gap
    end = max(records) + 1

    async def load(ctx):
        for index, word in program.table_writes():
            ctx.set(dut.table_w.payload.as_value(), index | word << INDEX_BITS)
            ctx.set(dut.table_w.valid, 1)
            await ctx.tick().until(dut.table_w.ready)
        ctx.set(dut.table_w.valid, 0)
        ctx.set(dut.commit, 1)
        await ctx.tick()
        ctx.set(dut.commit, 0)
        await ctx.tick().until(~dut.commit_pending)

    async def bench(ctx):
        await load(ctx)
        limit = end + 40 * len(frames) + 2000
        for cycle in range(limit):
            beat = beats.get(cycle)
            ctx.set(dut.beat.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.beat.tdata, beat[0])
                ctx.set(dut.beat.tkeep, beat[1])
                ctx.set(dut.beat.tlast, beat[2])
            rec = records.get(cycle)
            ctx.set(dut.parsed.valid, rec is not None)
            if rec is not None:
                ctx.set(dut.parsed.payload.as_value(), rec)
            _, _, valid, res, ev = await ctx.tick().sample(dut.result.valid, dut.result.payload, dut.events)
            for name in events:
                events[name] += getattr(ev, name)
            if valid:
                results.append((FrameResult([Hit(res.hits[i].bucket, res.hits[i].pos, bool(res.hits[i].settled))
                                             for i in range(res.n_hits)], bool(res.overflow), bool(res.punt)),
                                 bool(res.skipped), bool(res.too_long)))
                cycles.append(cycle)
                if len(results) == len(frames):
                    return
        raise AssertionError(f"{len(results)} of {len(frames)} results after {limit} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, events, list(zip(sorted(records), cycles))


def check(cfg, program, frames, got, events, too_long=()):
    """Every result against the model, every Hyperscan occurrence against the results, the events."""
    model = MatcherModel(cfg.data_width, index_bits=INDEX_BITS)
    model.load(program.table)
    inspector = HostInspector(program.rules)
    assert len(got) == len(frames)
    occurrences = 0
    for n, ((frame, rx_error), (result, skipped, long)) in enumerate(zip(frames, got)):
        want, want_skipped, want_long, bounds = expected_result(cfg, model, frame, rx_error, n in too_long)
        assert (result, skipped, long) == (want, want_skipped, want_long), \
            f"frame {n} {frame.hex()} (bounds {bounds}): stage {result, skipped, long} vs model {want}"
        if bounds is None or long:
            continue
        hits = {(h.pos, h.bucket) for h in result.hits}
        for (ri, _), starts in inspector.occurrences(frame[bounds[0]:bounds[1]]).items():
            placement = program.rules[ri].placement
            for s in starts:
                occurrences += 1
                assert result.overflow or (s + placement.window_offset, placement.bucket) in hits, \
                    f"frame {n}: Hyperscan finds sid {program.rules[ri].sid} at {s}, the stage missed it"
                # The NIC settles it (a 4-byte offloaded rule) or the host must look.
                assert result.punt or program.rules[ri].status == "offloaded"
    expect = {"matcher_frames": sum(not s for _, s, _ in got), "matcher_punts": sum(r.punt for r, _, _ in got),
              "matcher_overflows": sum(r.overflow for r, _, _ in got), "matcher_too_long": len(too_long)}
    assert events == expect
    return occurrences


@pytest.fixture(scope="module")
def rules():
    return compile_literals(random.Random(15), 24)


@pytest.mark.parametrize("data_width", [64, 128])
def test_random_frames_back_to_back_match_model_and_hyperscan(rules, data_width):
    """Random frames back to back at one beat per cycle, records 13 cycles after each last beat
    (and, for a second run of the same frames at W=64, at random delays up to the sequential parser's)."""
    literals, program = rules
    cfg = NicConfig(data_width=data_width)
    rng = random.Random(1)
    frames = [random_frame(rng, literals, program) for _ in range(120 if data_width == 64 else 60)]
    got, events, _ = simulate(PayloadStage(cfg, index_bits=INDEX_BITS), program, frames)
    occurrences = check(cfg, program, frames, got, events)
    skipped = sum(s for _, s, _ in got)
    assert occurrences > 20 and 5 < skipped < len(frames) * 2 // 3, (occurrences, skipped)
    assert any(r.overflow for r, _, _ in got) and sum(r.punt for r, _, _ in got) > 15
    if data_width != 64:
        return
    delays = [rng.randrange(PARSER_LATENCY, 68) for _ in frames]
    got2, events2, _ = simulate(PayloadStage(cfg, index_bits=INDEX_BITS), program, frames, delays=delays)
    assert got2 == got and events2 == events


def test_maximum_then_minimum_frames_fit_the_default_fifo(rules):
    """Two maximum frames then minimum frames every 8 cycles while they wait for their records
    (the sequential parser's 67 cycles) and are replayed: nothing is too long, every result in
    order (the FIFO and job queue sizing; max_frame 1518 for a short run, so the depth has the least
    rounding slack)."""
    literals, program = rules
    cfg = NicConfig(max_frame=1518)
    rng = random.Random(2)
    big = bytes(Ether() / IP() / UDP() / plant(rng, literals, cfg.max_frame - 42))
    small = [(bytes(Ether() / IP() / UDP() / plant(rng, literals, 18)), False) for _ in range(60)]
    frames = [(big, False), (big, False)] + small + [(big, False)] + small[:20]
    stage = PayloadStage(cfg, index_bits=INDEX_BITS)
    assert stage.fifo_beats == 512
    got, events, _ = simulate(stage, program, frames, delays=[67] * len(frames))
    check(cfg, program, frames, got, events)
    assert not any(long for _, _, long in got)


def test_frame_longer_than_the_fifo_is_punted_and_counted(rules):
    """With a 32-beat FIFO a 600-byte IP frame is punted (``too_long``) and counted, a 600-byte
    non-IP frame is skipped but counted; the frames around them are matched as usual."""
    literals, program = rules
    rng = random.Random(3)
    ip_long = bytes(Ether() / IP() / TCP() / plant(rng, literals, 600))
    other_long = bytes(Ether(type=0x88B5) / plant(rng, literals, 600))
    frames = [f for f in (random_frame(rng, literals, program) for _ in range(40)) if len(f[0]) <= 160][:6]
    frames = frames[:3] + [(ip_long, False), (other_long, False)] + frames[3:]
    got, events, _ = simulate(PayloadStage(CFG, index_bits=INDEX_BITS, fifo_beats=32), program, frames, gap=120)
    check(CFG, program, frames, got, events, too_long={3, 4})
    assert got[3][0].punt and not got[4][0].punt and got[4][1]


def test_latency_of_an_isolated_frame(rules):
    """The result of a lone frame comes a fixed number of cycles after its record plus one per beat
    (docs/matcher.md, "In the NIC")."""
    literals, program = rules
    rng = random.Random(4)
    frames = [(bytes(Ether() / IP() / UDP() / plant(rng, literals, n)), False) for n in (18, 100, 1000)]
    got, events, timing = simulate(PayloadStage(CFG, index_bits=INDEX_BITS), program, frames, gap=200)
    check(CFG, program, frames, got, events)
    latencies = [res - rec - -(-len(f) // LANES) for (f, _), (rec, res) in zip(frames, timing)]
    assert latencies == [PayloadStage.REPLAY_LATENCY] * 3


def test_bad_parameters_are_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=r"^fifo_beats must be a power of two of at least 16, not 100$"):
            PayloadStage(CFG, fifo_beats=100)
        stage = PayloadStage(CFG)
        assert stage.fifo_beats >= 2 * CFG.max_frame // LANES
        assert repr(stage) == "PayloadStage(data_width=64, index_bits=11, tag_bits=21, max_hits=4, fifo_beats=4096)"
        del stage
        gc.collect()

"""The matcher gateware (hdl/matcher) against its golden model (host_driver/model/matcher.py), and
both against Hyperscan, which scans the same payloads for the same literals.

Three references meet on every random frame:

* gateware == golden model, result by result (hits, positions, overflow, punt);
* no false negatives: every occurrence Hyperscan finds of a literal is a hit of the model at the
  literal's window, and, unless the frame overflowed its hit slots, in the frame's result;
* with 4-byte literals (the window is the literal) the model's hits are exactly Hyperscan's caseless
  matches (the prefilter folds case; the host settles case-sensitive literals).

Cases include literals that straddle beat boundaries, nocase literals in mixed case, literals at
the payload's first and last byte, payload offsets anywhere in the frame and Ethernet padding
after the payload, at W=64 and W=128, with idle cycles on the input and back-pressure on the result.
"""

from __future__ import annotations

import gc
import random
import warnings

import hyperscan
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.matcher import Matcher, table_block_rams
from hdl.matcher.hashing import WINDOW
from host_driver.model.matcher import Entry, FrameResult, Hit, MatcherModel
from host_driver.rules import parse_rules
from host_driver.rules.content import compile_content

ALPHABET = b"abcdeABCDE\x00\xff|;"


def hex_content(lit: bytes) -> str:
    return "|" + " ".join(f"{b:02x}" for b in lit) + "|"


def compile_literals(literals, index_bits):
    """Rules with one content each (``|hex|``, nocase as given) through the real compiler.
    Drops (in place) literals whose every window collides with another's (those go to the host)."""
    program = _compile(literals, index_bits)
    literals[:] = [lit for lit, r in zip(literals, program.rules) if r.status != "host only"]
    return _compile(literals, index_bits)


def _compile(literals, index_bits):
    text = "".join(f'alert ip any any -> any any (content:"{hex_content(lit)}";{" nocase;" if nc else ""} '
                   f"sid:{i + 1};)\n" for i, (lit, nc) in enumerate(literals))
    return compile_content(parse_rules(text), index_bits=index_bits)


def random_literals(rng, n, lengths):
    return [(bytes(rng.choice(ALPHABET) for _ in range(rng.choice(lengths))), rng.random() < 0.5) for _ in range(n)]


def random_frame(rng, literals):
    """(frame, payload offset, payload length) with some literals planted, some at the payload's ends."""
    offset = rng.choice([0, 1, 7, 8, 9, 14, 42, 54, rng.randrange(0, 80)])
    plen = rng.choice([0, 1, 3, 4, 5, rng.randrange(0, 40), rng.randrange(0, 200)])
    payload = bytearray(rng.choice(ALPHABET) for _ in range(plen))
    for _ in range(rng.randrange(0, 4)):
        lit, nocase = rng.choice(literals)
        if len(lit) > plen:
            continue
        if nocase:
            lit = bytes(b ^ 0x20 if chr(b).isalpha() and rng.random() < 0.5 else b for b in lit)
        at = rng.choice([0, plen - len(lit), rng.randrange(0, plen - len(lit) + 1)])
        payload[at:at + len(lit)] = lit
    pad = rng.choice([0, 0, 3, 17]) if offset + plen else 1     # a frame has at least one byte
    frame = bytes(rng.randrange(256) for _ in range(offset)) + bytes(payload) + bytes(pad)
    return frame, offset, plen


def hyperscan_matches(literals, payload):
    """(literal index, start) of every occurrence of every literal, found by Hyperscan."""
    if not payload:
        return set()
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[b"".join(b"\\x%02x" % b for b in lit) for lit, _ in literals],
               ids=list(range(len(literals))), elements=len(literals),
               flags=[hyperscan.HS_FLAG_CASELESS if nc else 0 for _, nc in literals])
    found = set()

    def on_match(i, _frm, to, _flags, _ctx):
        found.add((i, to - len(literals[i][0])))
        return 0

    db.scan(payload, match_event_handler=on_match)
    return found


def check_against_hyperscan(program, model, literals, frame, offset, plen, exact_literals):
    payload = frame[offset:offset + plen]
    hs = hyperscan_matches(literals, payload)
    windows = {(pos, bucket) for pos, bucket, _ in model.window_hits(payload)}
    expected = {(start + program.rules[i].placement.window_offset, program.rules[i].placement.bucket)
                for i, start in hs}
    assert expected <= windows, f"false negative: {sorted(expected - windows)} in {payload!r}"
    result = model.frame(frame, offset, plen)
    if not result.overflow:
        assert expected <= {(h.pos, h.bucket) for h in result.hits}
    if exact_literals:
        # The prefilter folds case, so its exact set is Hyperscan's caseless one.
        caseless = hyperscan_matches([(lit, True) for lit, _ in literals], payload)
        expected = {(start, program.rules[i].placement.bucket) for i, start in caseless}
        assert windows == expected, f"4-byte literals: model {sorted(windows)} vs Hyperscan {sorted(expected)}"
    return result


def to_result(payload) -> FrameResult:
    n = payload.n_hits
    return FrameResult([Hit(payload.hits[i].bucket, payload.hits[i].pos, bool(payload.hits[i].settled))
                        for i in range(n)], bool(payload.overflow), bool(payload.punt))


def simulate(dut: Matcher, tables, frames, seed, idle=0.2, backpressure=0.3):
    """Run ``frames`` through ``dut``; ``tables`` maps a frame index to the program whose table is
    written (every bucket) and committed before it.
    Returns the results in order."""
    rng = random.Random(seed)
    results = []
    B = dut.data_width // 8

    async def load(ctx, program):
        for index, word in program.table_writes():      # packed as the driver packs them
            ctx.set(dut.table_w.payload.index, index)
            ctx.set(dut.table_w.payload.entry.as_value(), word)
            ctx.set(dut.table_w.valid, 1)
            await ctx.tick().until(dut.table_w.ready)
        ctx.set(dut.table_w.valid, 0)
        ctx.set(dut.commit, 1)
        await ctx.tick()
        ctx.set(dut.commit, 0)
        await ctx.tick().until(~dut.commit_pending)

    async def driver(ctx):
        for n, (frame, offset, plen) in enumerate(frames):
            if n in tables:
                await load(ctx, tables[n])
            ctx.set(dut.meta.payload, {"payload_offset": offset, "payload_len": plen})
            ctx.set(dut.meta.valid, 1)
            beats = [frame[i:i + B] for i in range(0, len(frame), B)]
            for k, beat in enumerate(beats):
                while rng.random() < idle:
                    ctx.set(dut.s_axis.tvalid, 0)
                    await ctx.tick()
                ctx.set(dut.s_axis.tdata, int.from_bytes(beat, "little"))
                ctx.set(dut.s_axis.tkeep, (1 << len(beat)) - 1)
                ctx.set(dut.s_axis.tlast, k == len(beats) - 1)
                ctx.set(dut.s_axis.tvalid, 1)
                await ctx.tick().until(dut.s_axis.tready)
            ctx.set(dut.s_axis.tvalid, 0)
            ctx.set(dut.meta.valid, 0)

    async def collector(ctx):
        limit = 50 * sum(len(f) // B + 8 for f, _, _ in frames) + 4 * sum(1 << t.index_bits for t in tables.values())
        for _ in range(limit):
            if len(results) == len(frames):
                return
            ready = rng.random() >= backpressure
            ctx.set(dut.result.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            if valid and ready:
                results.append(to_result(payload))
        raise AssertionError(f"{len(results)} of {len(frames)} results after {limit} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(collector)
    sim.run()
    return results


@pytest.mark.parametrize("data_width", [64, 128])
@pytest.mark.parametrize("lengths,exact", [((4,), True), ((4, 5, 6, 9, 13), False)], ids=["4-byte", "mixed"])
def test_gateware_model_and_hyperscan_agree(data_width, lengths, exact):
    rng = random.Random(f"{data_width}-{lengths}")
    index_bits = 9
    literals = random_literals(rng, 24, lengths)
    program = compile_literals(literals, index_bits)
    model = MatcherModel(data_width, index_bits=index_bits)
    model.load(program.table)
    frames = [random_frame(rng, literals) for _ in range(60)]
    lit = literals[0][0]
    frames += [(bytes(9) + lit * 6, 9, 6 * len(lit)),                      # more hits than slots
               (bytes(3) + lit + literals[1][0] + bytes(3), 3, 2 * len(lit) + 3)]   # two in one beat at W=64
    expected = [check_against_hyperscan(program, model, literals, *f, exact) for f in frames]
    assert sum(len(r.hits) for r in expected) > 20, "the random cases should hit"
    assert any(r.overflow for r in expected) and not all(r.overflow for r in expected)
    got = simulate(Matcher(data_width, index_bits=index_bits), {0: program}, frames, seed=data_width)
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"frame {n} {frames[n]!r}: gateware {g} vs model {e}"


def test_literal_at_every_offset_across_beats():
    """One 6-byte literal placed at every payload position 0..20 (straddling every beat boundary),
    payload exactly ending with it or not: one hit each, where the literal's window sits."""
    lit = b"aBcDeF"
    program = compile_literals([(lit, True)], 9)
    model = MatcherModel(64, index_bits=9)
    model.load(program.table)
    frames, expected = [], []
    wo = program.rules[0].placement.window_offset
    for offset in (0, 5, 14):
        for at in range(0, 21):
            for tail in (0, 2):
                payload = bytes(at) + lit.lower() + bytes(tail)
                frames.append((bytes(offset) + payload, offset, len(payload)))
                expected.append(FrameResult([Hit(program.rules[0].placement.bucket, at + wo, False)], False, True))
    assert [model.frame(*f) for f in frames] == expected
    assert simulate(Matcher(64, index_bits=9), {0: program}, frames, seed=1) == expected


def test_commit_swaps_tables_between_frames():
    """Frames before the commit see the old table, frames after it the new one; a table written
    into the shadow bank does not disturb the frames matched meanwhile."""
    rng = random.Random(7)
    lits_a = random_literals(rng, 10, (4, 6))
    lits_b = random_literals(rng, 10, (5, 7))
    prog_a, prog_b = compile_literals(lits_a, 9), compile_literals(lits_b, 9)
    frames = [random_frame(rng, lits_a + lits_b) for _ in range(30)]
    model = MatcherModel(64, index_bits=9)
    expected = []
    for n, f in enumerate(frames):
        if n in (0, 15):
            model.load((prog_a if n == 0 else prog_b).table)
        expected.append(model.frame(*f))
    got = simulate(Matcher(64, index_bits=9), {0: prog_a, 15: prog_b}, frames, seed=3)
    assert got == expected
    assert got[15:] != [MatcherModel(64, 9).frame(*f) for f in frames[15:]], "table B must hit something"


def test_settled_bucket_does_not_punt():
    """A 4-byte nocase rule alone in its bucket: the hit is settled and the frame is not punted."""
    program = compile_literals([(b"ab\x00d", True)], 9)
    assert program.rules[0].status == "offloaded"
    model = MatcherModel(64, index_bits=9)
    model.load(program.table)
    frame = bytes(20) + b"xxAB\x00Dyy"
    want = FrameResult([Hit(program.rules[0].placement.bucket, 2, True)], False, False)
    assert model.frame(frame, 20, 8) == want
    assert simulate(Matcher(64, index_bits=9), {0: program}, [(frame, 20, 8)], seed=2) == [want]


def test_bad_parameters_are_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built components
        with pytest.raises(ValueError, match=r"^data width must be a positive multiple of 8, not 12$"):
            Matcher(12)
        with pytest.raises(ValueError, match=r"^tag_bits must be an integer in 0..21, not 22$"):
            Matcher(64, index_bits=11, tag_bits=22)
        gc.collect()
    assert WINDOW == 4
    assert Entry().valid is False


def test_block_ram_count_matches_synthesis():
    """The DP16KD counts yowasp-nextpnr reported for the three sizes at W=64 (docs/matcher.md)."""
    assert [table_block_rams(64, bits) for bits in (9, 11, 13)] == [16, 48, 168]


def test_back_to_back_frames_at_one_beat_per_cycle():
    """II=1: with the result consumer ready, ``s_axis.tready`` never drops, frames back to back
    (short ones included), a loaded table, hits and all (W/8 bytes per cycle)."""
    rng = random.Random(5)
    literals = random_literals(rng, 12, (4, 6))
    program = compile_literals(literals, 9)
    dut = Matcher(64, index_bits=9)
    frames = [random_frame(rng, literals) for _ in range(40)]
    stalls = []

    async def bench(ctx):
        ctx.set(dut.result.ready, 1)
        for index, e in sorted(program.table.items()):
            ctx.set(dut.table_w.payload, {"index": index, "entry": {"valid": 1, "settled": e.settled, "tag": e.tag}})
            ctx.set(dut.table_w.valid, 1)
            await ctx.tick().until(dut.table_w.ready)
        ctx.set(dut.table_w.valid, 0)
        ctx.set(dut.commit, 1)
        await ctx.tick()
        ctx.set(dut.commit, 0)
        await ctx.tick().until(~dut.commit_pending)
        ctx.set(dut.meta.valid, 1)
        for frame, offset, plen in frames:
            ctx.set(dut.meta.payload, {"payload_offset": offset, "payload_len": plen})
            beats = [frame[i:i + 8] for i in range(0, len(frame), 8)]
            for k, beat in enumerate(beats):
                ctx.set(dut.s_axis.tdata, int.from_bytes(beat, "little"))
                ctx.set(dut.s_axis.tkeep, (1 << len(beat)) - 1)
                ctx.set(dut.s_axis.tlast, k == len(beats) - 1)
                ctx.set(dut.s_axis.tvalid, 1)
                _, _, ready = await ctx.tick().sample(dut.s_axis.tready)
                while not ready:
                    stalls.append(len(stalls))
                    _, _, ready = await ctx.tick().sample(dut.s_axis.tready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert stalls == []


def test_default_build_size():
    """The default build's table (index_bits=11, 1024 literals) at W=64: gateware == model, and
    Hyperscan finds nothing the model misses."""
    rng = random.Random(11)
    literals = random_literals(rng, 30, (4, 5, 8))
    program = compile_literals(literals, 11)
    model = MatcherModel(64, index_bits=11)
    model.load(program.table)
    frames = [random_frame(rng, literals) for _ in range(25)]
    expected = [check_against_hyperscan(program, model, literals, *f, False) for f in frames]
    assert sum(len(r.hits) for r in expected) > 5
    assert simulate(Matcher(64, index_bits=11), {0: program}, frames, seed=11) == expected

"""Storm control's token buckets: one per (ingress port, class), refilled lazily.

The behaviour is the golden model's ``StormLimit`` (host_driver/model/switch.py, docs/switch.md
"Behaviour" item 4): a bucket holds at most ``burst`` bytes (full at start), gains ``rate``
bytes per 1024 cycles, and a frame passes when the bucket holds its length, which it then
takes. Tokens count 1/1024 bytes, so a bucket gains ``rate`` tokens a cycle and a frame of
``length`` bytes costs ``length * 1024``. A bucket's level at cycle ``t`` is

    min(cap, tokens + rate * (t - last))

with ``tokens`` and ``last`` saved when a frame last paid (the refill is lazy). Saving the level
at any cycle in between changes nothing (the minimum absorbs it), so only paying frames write.

Instead of a multiplier (16 x 30 bits, several cycles in the fabric; unregistered in a DSP it
makes about 110 MHz), each bucket has a credit clock that gains ``rate`` every cycle, a plain
accumulator with no compare in its loop, so ``rate * (t - last)`` is the clock's advance since
the bucket's saved reading, modulo the clock's range. Each bucket counts (up to 2) the flips of
the clock's bit ``token_bits`` since it paid: that bit flips every ``2**token_bits`` of advance,
more than any ceiling, so after two flips the bucket is full; with fewer the advance is below
``3 * 2**token_bits`` and the modular difference is exact. A bucket that never paid since reset
is full.

Per bucket the LUT RAM keeps one number, ``base`` = the clock's reading less the tokens when it
last paid, so that ``clock - (base + cost)`` is the level less the frame's cost. A frame's check
reads its bucket, and the answer comes :data:`LATENCY` cycles later::

    check (cycle 0): base from the RAM; the port's clock, ceiling and flags per class -> registers
    cycle 1:         the class's; room = ceiling - cost; spent = base + cost
    cycle 2:         left = clock - spent (the level less the cost); enough; left > room
    verdict (3):     with ``pay``: tokens min(room, left), as base: spent, or clock - room
    cycle 4:         the RAM and the bucket's flags take it

Checks may come every :data:`SPACING` (2) cycles, back to back on one bucket: a check reads the
RAM before the payments of the checks 2, 3 and 4 cycles ahead are saved, so what they pay is
forwarded (the read-modify-write hazard): at cycle 0 the payment being saved (the check 4 cycles
ahead) or being decided (``pay`` at the verdict of the check 3 cycles ahead) replaces the RAM's
word; the payment decided at cycle 1 (the check 2 cycles ahead) replaces it again: the sums and
differences are made from both bases, and whether that check paid picks at cycle 2. A
forwarded payment also means the bucket is not full (it paid a few cycles ago).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.packet.meta import FRAME_LEN_BITS
from hdl.switch.settings import STORM_BURST_BITS, STORM_RATE_BITS, StormClass

__all__ = ["StormBuckets", "LATENCY", "SPACING", "TOKEN_SHIFT"]

#: Cycles from a check to its verdict.
LATENCY = 3
#: Fewest cycles from one check to the next (payments of the checks ahead are forwarded).
SPACING = 2
#: Cycles from a check to the cycle its payment is saved in (the bucket's flips restart there).
_SAVE_DELAY = LATENCY + 1
#: Tokens per byte, as a shift: buckets count 1/1024 bytes.
TOKEN_SHIFT = 10


class StormBuckets(wiring.Component):
    """Storm control's buckets, one per (port, :class:`~hdl.switch.settings.StormClass`).

    Parameters
    ----------
    ports: int
        Number of ingress ports.
    rate_bits, burst_bits:
        Widths of the rate (bytes per 1024 cycles) and burst (bytes) settings.
    length_bits:
        Width of a frame's length (bytes).

    Members
    -------
    check: In(stream.Signature({port, cls, length}, always_ready=True))
        A frame that may take from bucket (``port``, ``cls``): ``length`` in bytes.
    verdict: Out(stream.Signature({policed, enough}, always_ready=True))
        :data:`LATENCY` cycles after its check: whether the bucket is policed (its rate or burst
        is not 0) and whether it holds the frame's length.
    pay: In(1)
        With ``verdict``: the frame takes its length from the bucket (set it only when
        ``enough``).
    rate_<port>_<class>, burst_<port>_<class>: In
        The limits (``class`` the :class:`StormClass` label). A rate change applies from the
        cycle it is made, as if the bucket gained the rate every cycle.
    """

    def __init__(self, ports: int, *, rate_bits: int = STORM_RATE_BITS, burst_bits: int = STORM_BURST_BITS,
                 length_bits: int = FRAME_LEN_BITS):
        self.ports = ports
        self.rate_bits, self.burst_bits, self.length_bits = rate_bits, burst_bits, length_bits
        self.token_bits = burst_bits + TOKEN_SHIFT
        # Bit `token_bits` of a clock flips every 2**token_bits of advance, more than any
        # ceiling; a check's advance may miss one flip (its save lands _SAVE_DELAY cycles
        # later), so that many cycles (and one) of the highest rate must stay below one flip. An advance
        # is then below 3 * 2**token_bits, and (tokens + advance - cost) must fit the clock's
        # range as a signed number, and so must (tokens + advance - cap).
        self.clock_bits = max(self.token_bits + 4, length_bits + TOKEN_SHIFT + 2)
        if (_SAVE_DELAY + 1) << rate_bits > 1 << self.token_bits:
            raise ValueError(f"storm rate of {rate_bits} bits too wide for a burst of {burst_bits} bits")
        self.port_bits = max(1, (ports - 1).bit_length())
        members = {
            "check": In(stream.Signature(data.StructLayout({"port": self.port_bits, "cls": 2,
                                                            "length": length_bits}), always_ready=True)),
            "verdict": Out(stream.Signature(data.StructLayout({"policed": 1, "enough": 1}), always_ready=True)),
            "pay": In(1),
        }
        for i in range(ports):
            for c in StormClass:
                members[f"rate_{i}_{c.label}"] = In(rate_bits)
                members[f"burst_{i}_{c.label}"] = In(burst_bits)
        super().__init__(members)

    def __repr__(self):
        return (f"StormBuckets(ports={self.ports}, rate_bits={self.rate_bits}, burst_bits={self.burst_bits}, "
                f"length_bits={self.length_bits})")

    def elaborate(self, platform):
        m = Module()
        n, tb, kw = self.ports, self.token_bits, self.clock_bits
        cost_bits = self.length_bits + TOKEN_SHIFT
        classes = list(StormClass)
        # Bucket index: class in the low two bits (class 3 is never policed).
        slots = 4 << self.port_bits

        def index(i, c):
            return i << 2 | c

        # --- per bucket: credit clock, its flips since the bucket paid, full, policed -----------
        clocks = [[Signal(kw, name=f"credit_{i}_{c.label}") for c in classes] for i in range(n)]
        flips = [[Signal(2, name=f"flips_{i}_{c.label}") for c in classes] for i in range(n)]
        fresh = Signal(slots, init=(1 << slots) - 1)     # never paid since reset
        full = [[Signal(name=f"full_{i}_{c.label}") for c in classes] for i in range(n)]
        policed = [[Signal(name=f"policed_{i}_{c.label}") for c in classes] for i in range(n)]
        wrote = Signal()
        write_idx = Signal(self.port_bits + 2)
        for i in range(n):
            for c in classes:
                rate = getattr(self, f"rate_{i}_{c.label}")
                burst = getattr(self, f"burst_{i}_{c.label}")
                clock = clocks[i][c]
                nxt = Signal(kw, name=f"credit_next_{i}_{c.label}")
                m.d.comb += nxt.eq(clock + rate)
                m.d.sync += clock.eq(nxt)
                flip = nxt[tb] != clock[tb]
                mine = wrote & (write_idx == index(i, c))
                with m.If(mine):
                    m.d.sync += [flips[i][c].eq(flip), fresh[index(i, c)].eq(0)]
                with m.Elif(flip & (flips[i][c] != 2)):
                    m.d.sync += flips[i][c].eq(flips[i][c] + 1)
                m.d.comb += full[i][c].eq(fresh[index(i, c)] | (flips[i][c] == 2))
                # Registered (why: the OR of 36 setting bits need not sit in front of the check's mux).
                m.d.sync += policed[i][c].eq((rate != 0) | (burst != 0))

        # --- the saved state: the credit clock's reading less the tokens when it last paid ------
        m.submodules.saved = saved = Memory(shape=kw, depth=slots, init=[])
        rd = saved.read_port(domain="comb")
        wr = saved.write_port()

        # Check (cycle 0): the RAM, and per class the port's clock, ceiling and flags (why: one
        # 21:1 mux with its decode did not fit a cycle; the class picks among three at cycle 1).
        req = self.check.payload
        idx = Signal(self.port_bits + 2)
        m.d.comb += [idx.eq(Cat(req.cls, req.port)), rd.addr.eq(idx)]
        group_layout = data.StructLayout({"clock": kw, "burst": self.burst_bits, "full": 1, "policed": 1})
        s1_group = [Signal(group_layout, name=f"s1_{c.label}") for c in classes]
        s1_valid, s1_base, s1_cost = Signal(), Signal(kw), Signal(cost_bits)
        s1_cls, s1_idx = Signal(2), Signal.like(idx)
        # The stage registers load in every cycle, whether a check comes or not (why: `valid` as
        # the enable of some 150 flip-flops, from the stage's take across the die, did not fit);
        # only `s1_valid` follows it.
        m.d.sync += s1_valid.eq(self.check.valid)
        # The payments the RAM's word does not hold yet: the one being saved now (the check 4
        # cycles ahead) and the one being decided now (`pay` at the verdict of the check 3 cycles
        # ahead; its base as it will be saved). The one decided next cycle (the check 2 cycles
        # ahead) is picked at cycle 1; whether it is this bucket is compared here, registered.
        s3_valid, s3_capped_level = Signal(), Signal()
        s3_spent, s3_capped, s3_idx, s2_idx = Signal(kw), Signal(kw), Signal.like(idx), Signal.like(idx)
        new_base = Signal(kw)
        saving_here, deciding_here = Signal(), Signal()
        m.d.comb += [saving_here.eq(wrote & (write_idx == idx)),
                     deciding_here.eq(s3_valid & self.pay & (s3_idx == idx))]
        s1_paid = Signal()        # a forwarded payment: the bucket paid a few cycles ago
        s1_same_s2 = Signal()
        m.d.sync += [s1_base.eq(Mux(deciding_here, Mux(s3_capped_level, s3_capped, s3_spent),
                                    Mux(saving_here, new_base, rd.data))),
                     s1_paid.eq(saving_here | deciding_here), s1_same_s2.eq(s2_idx == idx),
                     s1_cost.eq(req.length << TOKEN_SHIFT), s1_cls.eq(req.cls), s1_idx.eq(idx)]
        with m.Switch(req.port):
            for i in range(n):
                with m.Case(i):
                    for c in classes:
                        burst = getattr(self, f"burst_{i}_{c.label}")
                        g = s1_group[c]
                        m.d.sync += [g.clock.eq(clocks[i][c]), g.burst.eq(burst), g.full.eq(full[i][c]),
                                     g.policed.eq(policed[i][c])]

        # Cycle 1: the class's clock and room (ceiling less cost); base + cost.
        wide = signed(max(tb, cost_bits) + 2)
        sel = Signal(group_layout)
        with m.Switch(s1_cls):
            for c in classes:
                with m.Case(c):
                    m.d.comb += sel.eq(s1_group[c])
        s2_valid, s2_clock, s2_room, s2_spent = Signal(), Signal(kw), Signal(wide), Signal(kw)
        # `s2_base_cap1` is base + cap + 1: cap's low TOKEN_SHIFT bits are 0, so the 1 goes in
        # there (one adder).
        s2_full, s2_policed, s2_base_cap1 = Signal(), Signal(), Signal(kw)
        # The payment being decided now (`pay` at the verdict of the check 2 cycles ahead) is
        # this check's base if it is this bucket's: both sums are made from its base too, side
        # by side, and cycle 2 picks by `s2_fwd` after the subtractions (why: `pay` or a compare
        # of bucket indices picking the base in front of the adders made 119.5 MHz, a pick after
        # them behind the class's ceiling select 143.4 MHz).
        cap1 = Cat(Const(1, TOKEN_SHIFT), sel.burst)
        paying_now = s3_valid & self.pay & s1_same_s2
        fwd_base = Mux(s3_capped_level, s3_capped, s3_spent)        # what that check saves if it pays
        s2_fwd, s2_spent_fwd, s2_base_cap1_fwd = Signal(), Signal(kw), Signal(kw)
        m.d.sync += [
            s2_spent.eq(s1_base + s1_cost), s2_base_cap1.eq(s1_base + cap1),
            s2_spent_fwd.eq(fwd_base + s1_cost), s2_base_cap1_fwd.eq(fwd_base + cap1),
            s2_fwd.eq(paying_now), s2_full.eq(sel.full & ~s1_paid & ~paying_now),
        ]
        m.d.sync += [s2_valid.eq(s1_valid), s2_clock.eq(sel.clock), s2_room.eq((sel.burst << TOKEN_SHIFT) - s1_cost),
                     s2_policed.eq(sel.policed), s2_idx.eq(s1_idx)]

        # Cycle 2: the level less the cost, `left` = clock - (base + cost) = tokens + advance - cost
        # (modulo the clock's range, which holds it as a signed number). min(cap, tokens +
        # advance) >= cost holds when both cap >= cost and tokens + advance >= cost; a full
        # bucket's level is cap.
        # Whether the level is the ceiling, left > room, is clock - (base + cap) > 0 (the cost
        # cancels), beside `left` rather than after it; and that is clock - (base + cap + 1) >= 0,
        # a sign bit (why: `> 0` after the subtraction added an OR of all its bits, 7.4 ns).
        # The clock's range holds both differences as signed numbers, with room to spare.
        # Each difference from both bases; `s2_fwd` picks the sign bits.
        left, over_1 = Signal(signed(kw)), Signal(signed(kw))
        left_fwd, over_1_fwd = Signal(signed(kw)), Signal(signed(kw))
        m.d.comb += [left.eq(s2_clock - s2_spent), over_1.eq(s2_clock - s2_base_cap1),
                     left_fwd.eq(s2_clock - s2_spent_fwd), over_1_fwd.eq(s2_clock - s2_base_cap1_fwd)]
        left_ok = Mux(s2_fwd, left_fwd >= 0, left >= 0)
        over_ok = Mux(s2_fwd, over_1_fwd >= 0, over_1 >= 0)
        enough, verdict_policed = Signal(), Signal()
        m.d.sync += [s3_valid.eq(s2_valid), s3_capped_level.eq(s2_full | over_ok),
                     s3_spent.eq(Mux(s2_fwd, s2_spent_fwd, s2_spent)), s3_capped.eq(s2_clock - s2_room),
                     s3_idx.eq(s2_idx), verdict_policed.eq(s2_policed), enough.eq((s2_room >= 0) & (s2_full | left_ok))]
        m.d.comb += [self.verdict.valid.eq(s3_valid), self.verdict.payload.policed.eq(verdict_policed),
                     self.verdict.payload.enough.eq(enough)]

        # Verdict (cycle 3): the payment. The bucket keeps min(room, left) tokens, saved as
        # clock - tokens: base + cost (left), or clock - room (the ceiling). Written a cycle
        # later from registers (why: the stage's decision drives `pay`, and the write enable
        # reaches every bucket's flags and the RAM).
        m.d.sync += wrote.eq(s3_valid & self.pay)
        with m.If(s3_valid):
            m.d.sync += [new_base.eq(Mux(s3_capped_level, s3_capped, s3_spent)), write_idx.eq(s3_idx)]
        m.d.comb += [wr.addr.eq(write_idx), wr.en.eq(wrote), wr.data.eq(new_base)]
        return m

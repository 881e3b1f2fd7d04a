"""Payload signature matcher: a hashed fast-pattern prefilter over every byte position, W/8 per cycle.

Architecture (docs/matcher.md has the reasoning, the figures and the contract with the host):

* Every payload byte position ``p`` starts a 4-byte window (:data:`~hdl.matcher.hashing.WINDOW`).
  Each cycle the beat's W/8 windows (the last three bytes of the previous beat are kept, so a
  window straddles beats freely) are case-folded and mixed by a fixed invertible XOR network
  (:func:`~hdl.matcher.hashing.mix`) into a bucket index and a tag.
* One table of ``2**index_bits`` buckets per bank holds, per bucket, ``valid``, ``tag`` and
  ``settled``. A window hits when its bucket is valid and its tag equals the stored one. The rule
  compiler puts each literal's chosen 4-byte window (its fast pattern, case-folded) in the table,
  so a literal that occurs in the payload always hits at the window's position: **no false
  negatives**. With the full tag (``tag_bits = 32 - index_bits``) a hit proves the folded window;
  ``settled`` (set by the compiler) says that the hit alone proves a rule, so the NIC need not
  punt the frame.
* The table is replicated once per byte lane (each lane reads its own copy every cycle: block
  RAMs have too few read ports), as Pigasus replicates its per-offset hash tables. Every copy has
  two banks: the driver writes the shadow bank through ``table_w`` while frames are matched
  against the active one, and ``commit`` swaps them between frames.
* Per frame the hits are collected, one per cycle (the lowest lane), into ``max_hits`` slots; a
  second hit in the same cycle or a hit beyond the slots sets ``overflow``, which tells the host
  to verify every prefiltered rule on the frame. Exactly the golden model's
  :class:`host_driver.model.matcher.MatcherModel`.

Ref: Zhao et al., "Achieving 100Gbps Intrusion Prevention on a Single Server", OSDI 2020
(Pigasus: hashed fast-pattern tables over each byte offset, then full matching on the CPU).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed as signed_shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.lib.ram import PipelinedRam
from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import keep_copy
from hdl.matcher.hashing import MIX_ROWS, WINDOW, fold

__all__ = ["Matcher", "table_block_rams", "entry_layout", "write_layout", "meta_layout", "hit_layout", "result_layout",
           "OFFSET_BITS", "PIPELINE_BEATS"]

#: Width of payload offsets, lengths and hit positions (frames up to 64 KiB).
OFFSET_BITS = 16
#: Beats between a beat's acceptance and its hits reaching the collector (S0..S9).
PIPELINE_BEATS = 11
_RESULT_FIFO_DEPTH = 32
assert _RESULT_FIFO_DEPTH - PIPELINE_BEATS - 3 >= 1


def _group_bits(depth: int) -> int:
    """Entry bits per block RAM (one DP16KD word: 18/9/4/2/1 bits at 1K/2K/4K/8K/16K deep, Lattice
    TN1264): each block RAM gets its own copy of the read address and of the write."""
    return {10: 18, 11: 9, 12: 4, 13: 2, 14: 1}.get(max(10, (depth - 1).bit_length()), 1)


def table_block_rams(data_width: int, index_bits: int, tag_bits: int | None = None) -> int:
    """DP16KD block RAMs a :class:`Matcher`'s tables take on ECP5: per byte lane, one per DP16KD
    word of an entry (both banks in one RAM)."""
    tag_bits = 32 - index_bits if tag_bits is None else tag_bits
    return data_width // 8 * -(-entry_layout(tag_bits).size // _group_bits(2 << index_bits))


def entry_layout(tag_bits: int) -> data.StructLayout:
    """One bucket of the pattern table, as stored and as the driver writes it."""
    return data.StructLayout({"valid": 1, "settled": 1, "tag": tag_bits})


def write_layout(index_bits: int, tag_bits: int) -> data.StructLayout:
    """A shadow-bank write: the bucket and its new entry."""
    return data.StructLayout({"index": index_bits, "entry": entry_layout(tag_bits)})


def meta_layout() -> data.StructLayout:
    """What the matcher needs from the parser per frame: where the payload starts and how long it is
    (IP payload: Ethernet padding is not payload)."""
    return data.StructLayout({"payload_offset": OFFSET_BITS, "payload_len": OFFSET_BITS})


def hit_layout(index_bits: int) -> data.StructLayout:
    """One recorded hit: the bucket, the window's first byte relative to the payload, ``settled``."""
    return data.StructLayout({"bucket": index_bits, "pos": OFFSET_BITS, "settled": 1})


def result_layout(index_bits: int, max_hits: int) -> data.StructLayout:
    """Per frame: the hits in payload order (``n_hits`` of the slots used), ``overflow`` (more hits
    than recorded: verify everything) and ``punt`` (the host must look: an unsettled hit or overflow)."""
    return data.StructLayout({"hits": data.ArrayLayout(hit_layout(index_bits), max_hits),
                              "n_hits": range(max_hits + 1), "overflow": 1, "punt": 1})


class Matcher(wiring.Component):
    """Multi-literal prefilter over a frame's payload at ``data_width/8`` bytes per cycle (II=1).

    A sink: it takes every beat of every frame (``s_axis``), one ``meta`` per frame, and gives one
    ``result`` per frame in order, 11 cycles after the frame's last beat (docs/matcher.md).

    Timing contract: ``s_axis.tready`` is high while a ``meta`` is waiting (it is taken with the
    frame's last beat) and the result FIFO has room; the block never stalls otherwise, so
    back-to-back frames go through at one beat per cycle.

    Parameters
    ----------
    data_width : int
        W, bits per beat (a multiple of 8).
    index_bits : int
        log2 of the buckets per bank. The compiler fills at most half of them (10 -> 512
        literals, 11 -> 1024, 13 -> 4096).
    tag_bits : int
        Tag stored per bucket; ``32 - index_bits`` (the default) makes a hit exact on the folded
        window, fewer bits save block RAM at the cost of prefilter false positives.
    max_hits : int
        Hit slots per frame result.

    Members
    -------
    s_axis : In(AXIStreamSignature(data_width))
        The frame from its first byte (Ethernet header included).
    meta : In(stream.Signature(meta_layout()))
        ``payload_offset`` and ``payload_len`` of the frame on ``s_axis``; held until its last beat.
    result : Out(stream.Signature(result_layout(index_bits, max_hits)))
    table_w : In(stream.Signature(write_layout(index_bits, tag_bits)))
        Writes into the shadow bank (not ready while a commit is pending or draining).
    commit : In(1)
        Pulse: the shadow bank becomes active before the next frame's first beat.
    commit_pending : Out(1)
        A commit is waiting for a frame boundary or for the pipeline to drain.
    active_bank : Out(1)
    """

    def __init__(self, data_width: int = 64, index_bits: int = 11, tag_bits: int | None = None, max_hits: int = 4):
        self.data_width, self.index_bits, self.tag_bits, self.max_hits = data_width, index_bits, tag_bits, max_hits
        if data_width <= 0 or data_width % 8:
            raise ValueError(f"data width must be a positive multiple of 8, not {data_width!r}")
        if not isinstance(index_bits, int) or not 4 <= index_bits <= 20:
            raise ValueError(f"index_bits must be an integer in 4..20, not {index_bits!r}")
        tag_bits = 32 - index_bits if tag_bits is None else tag_bits
        if not isinstance(tag_bits, int) or not 0 <= tag_bits <= 32 - index_bits:
            raise ValueError(f"tag_bits must be an integer in 0..{32 - index_bits}, not {tag_bits!r}")
        if not isinstance(max_hits, int) or max_hits < 1:
            raise ValueError(f"max_hits must be a positive integer, not {max_hits!r}")
        self.data_width, self.index_bits, self.tag_bits, self.max_hits = data_width, index_bits, tag_bits, max_hits
        self.lanes = data_width // 8
        super().__init__({
            "s_axis": In(AXIStreamSignature(data_width)),
            "meta": In(stream.Signature(meta_layout())),
            "result": Out(stream.Signature(result_layout(index_bits, max_hits))),
            "table_w": In(stream.Signature(write_layout(index_bits, tag_bits))),
            "commit": In(1),
            "commit_pending": Out(1),
            "active_bank": Out(1),
        })

    @property
    def exact(self) -> bool:
        """True when the stored tag is whole, so a hit proves the folded 4-byte window."""
        return self.tag_bits == 32 - self.index_bits

    @property
    def block_rams(self) -> int:
        """DP16KD block RAMs of the tables on ECP5 (:func:`table_block_rams`)."""
        return table_block_rams(self.data_width, self.index_bits, self.tag_bits)

    def __repr__(self):
        return (f"Matcher(data_width={self.data_width}, index_bits={self.index_bits}, "
                f"tag_bits={self.tag_bits}, max_hits={self.max_hits})")

    def elaborate(self, platform):
        m = Module()
        B, ib, tb = self.lanes, self.index_bits, self.tag_bits
        sx = self.s_axis

        # --- result FIFO and input handshake -----------------------------------------------------
        m.submodules.results = fifo = SyncFIFOBuffered(width=len(self.result.payload.as_value()),
                                                       depth=_RESULT_FIFO_DEPTH)
        m.d.comb += [self.result.valid.eq(fifo.r_rdy), self.result.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.result.ready)]
        # Room for every frame that can still be in the pipeline (one per beat at most).
        # Registered (so one cycle stale: the level grows by one a cycle at most, hence the extra 1).
        room = Signal()
        m.d.sync += room.eq(fifo.level <= _RESULT_FIFO_DEPTH - PIPELINE_BEATS - 3)
        m.d.comb += sx.tready.eq(self.meta.valid & room)
        fire = Signal()
        m.d.comb += [fire.eq(sx.tvalid & sx.tready), self.meta.ready.eq(fire & sx.tlast)]

        # --- banks: writes into the shadow, commit between frames --------------------------------
        active, pending, in_frame = Signal(), Signal(), Signal()
        write = Signal()      # a shadow-bank write reaches the RAMs this cycle
        drain = Signal(range(PIPELINE_BEATS + 1))
        swap = Signal()
        write_late = Signal(2)   # the write one and two cycles later, through the lane and group copies
        m.d.sync += write_late.eq(Cat(write, write_late[0]))
        m.d.comb += [swap.eq(pending & ~in_frame & ~write & ~write_late.any()),
                     self.commit_pending.eq(pending | (drain != 0)), self.active_bank.eq(active)]
        with m.If(fire):
            m.d.sync += in_frame.eq(~sx.tlast)
        with m.If(swap):
            m.d.sync += [active.eq(~active), pending.eq(0), drain.eq(PIPELINE_BEATS)]
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        with m.If(self.commit):
            m.d.sync += pending.eq(1)
        m.d.comb += self.table_w.ready.eq(~pending & (drain == 0) & ~self.commit)
        # The write goes to the block RAMs from registers: one cycle later, off the handshake's path.
        w_addr = Signal(ib + 1)
        w_data = Signal(entry_layout(tb).size)
        m.d.sync += [write.eq(self.table_w.valid & self.table_w.ready),
                     w_addr.eq(Cat(self.table_w.payload.index, ~active)), w_data.eq(self.table_w.payload.entry)]
        beat_bank = Signal()
        m.d.comb += beat_bank.eq(active ^ swap)

        # --- S0: windows of the accepted beat -----------------------------------------------------
        folded = [Signal(8, name=f"folded_{i}") for i in range(B)]
        for i, f in enumerate(folded):
            byte = sx.tdata[8 * i:8 * i + 8]
            upper = (byte >= 0x41) & (byte <= 0x5A)
            m.d.comb += f.eq(Mux(upper, byte | 0x20, byte))
        assert fold(0x41) == 0x61
        tail = [Signal(8, name=f"tail_{i}") for i in range(WINDOW - 1)]   # last bytes of the previous beat
        ext = tail + folded
        with m.If(fire):
            m.d.sync += [t.eq(ext[-(WINDOW - 1) + k]) for k, t in enumerate(tail)]
        base = Signal(OFFSET_BITS)      # frame byte of lane 0
        with m.If(fire):
            m.d.sync += base.eq(Mux(sx.tlast, 0, base + B))
        off, length = self.meta.payload.payload_offset, self.meta.payload.payload_len

        def clamp(value):   # value: signed; lanes 0..B, from OR trees and a small compare (no carry chain)
            out = Signal(range(B + 1))
            low = len(out)
            big = value[low:-1].any() | (value[:low] > B)
            m.d.comb += out.eq(Mux(value[-1], 0, Mux(big, B, value[:low])))
            return out

        def signed(v):      # an unsigned value as a (non-negative) signed one, for the differences below
            return Cat(v, Const(0, 1)).as_signed()

        def delay(sig, n, name):
            for k in range(n):
                nxt = Signal.like(sig, name=f"{name}_d{k + 1}")
                m.d.sync += nxt.eq(sig)
                sig = nxt
            return sig

        s1 = dict(valid=Signal(), last=Signal(), first=Signal(), bank=Signal(), keep=Signal(B),
                  diff=Signal(signed_shape(OFFSET_BITS + 2)), len=Signal(OFFSET_BITS),
                  words=[Signal(32, name=f"s1_word_{i}") for i in range(B)])
        m.d.sync += s1["valid"].eq(fire)
        m.d.sync += [s1["last"].eq(sx.tlast), s1["first"].eq(~in_frame), s1["bank"].eq(beat_bank),
                     s1["keep"].eq(sx.tkeep), s1["diff"].eq(signed(off) - signed(base)), s1["len"].eq(length)]
        m.d.sync += [w.eq(Cat(*ext[i:i + WINDOW])) for i, w in enumerate(s1["words"])]

        # --- S1: the payload's lanes, clamped, and the mix ---------------------------------------
        # Lane i's window covers frame bytes base+i-3 .. base+i: a payload window when
        # off <= base+i-3 and base+i < off+len, i.e. lo <= i < hi with lo = off-base+3, hi = off-base+len.
        s2 = dict(valid=Signal(), last=Signal(), first=Signal(), bank=Signal(), rel=Signal(OFFSET_BITS),
                  keep=Signal(B), lo=Signal(signed_shape(OFFSET_BITS + 4)), hi=Signal(signed_shape(OFFSET_BITS + 4)),
                  index=[Signal(ib, name=f"s2_index_{i}") for i in range(B)],
                  tag=[Signal(tb, name=f"s2_tag_{i}") for i in range(B)])
        # The mix in two stages: per lane, each output bit's XOR over each byte of the window (S1),
        # then the four byte parts (S1.5, one LUT4 per bit).
        s15 = {k: delay(s1[k], 1, f"s15_{k}") for k in ("valid", "last", "first", "bank", "keep", "diff", "len")}
        used = ib + tb
        parts = []
        for i, w in enumerate(s1["words"]):
            lane_parts = []
            for byte in range(WINDOW):
                part = Signal(used, name=f"s15_part_{i}_{byte}")
                m.d.sync += part.eq(Cat(*(Cat(*(w[b] for b in range(8 * byte, 8 * byte + 8) if row >> b & 1)).xor()
                                          for row in MIX_ROWS[:used])))
                lane_parts.append(part)
            parts.append(lane_parts)
        for k in ("valid", "last", "first", "bank", "keep"):
            m.d.sync += s2[k].eq(s15[k])
        m.d.sync += s2["rel"].eq(-s15["diff"] - (WINDOW - 1))     # window start of lane 0 in the payload
        m.d.sync += [s2["lo"].eq(s15["diff"] + (WINDOW - 1)), s2["hi"].eq(s15["diff"] + signed(s15["len"]))]
        for i, lane_parts in enumerate(parts):
            mixed = lane_parts[0] ^ lane_parts[1] ^ lane_parts[2] ^ lane_parts[3]
            m.d.sync += [s2["index"][i].eq(mixed[:ib]), s2["tag"][i].eq(mixed[ib:ib + tb])]

        # --- S2..S5: one table copy per lane, read latency two ----------------------------------------
        # Each block RAM gets its own copy of the read address (S2 -> S3) and of the write (accept ->
        # lane -> RAM): a register feeding a group of a lane's RAMs, spread over a nearly full die,
        # missed timing at 4096 literals (8 ns of routing to the farthest).
        width = entry_layout(tb).size
        group_bits = _group_bits(2 << ib)
        entries = []
        for i in range(B):
            # The write fans out in two register levels (lane, then group of RAMs).
            lane_w = keep_copy(write, name=f"w_en_{i}")
            lane_wa = keep_copy(w_addr, name=f"w_addr_{i}")
            lane_wd = keep_copy(w_data, name=f"w_data_{i}")
            m.d.sync += [lane_w.eq(write), lane_wa.eq(w_addr), lane_wd.eq(w_data)]
            words = []
            for g, lo_bit in enumerate(range(0, width, group_bits)):
                bits = min(group_bits, width - lo_bit)
                ram = PipelinedRam(bits, 2 << ib)
                m.submodules[f"table_{i}_{g}"] = ram
                r_addr = keep_copy(Cat(s2["index"][i], s2["bank"]), name=f"r_addr_{i}_{g}")
                wr = keep_copy(lane_w, name=f"w_en_{i}_{g}")
                wa = keep_copy(lane_wa, name=f"w_addr_{i}_{g}")
                wd = keep_copy(lane_wd[lo_bit:lo_bit + bits], name=f"w_data_{i}_{g}")
                m.d.sync += [r_addr.eq(Cat(s2["index"][i], s2["bank"])), wr.eq(lane_w), wa.eq(lane_wa),
                             wd.eq(lane_wd[lo_bit:lo_bit + bits])]
                m.d.comb += [ram.w_addr.eq(wa), ram.w_data.eq(wd), ram.w_en.eq(wr),
                             ram.r_addr.eq(r_addr), ram.r_en.eq(1)]
                words.append(ram.r_data)
            entries.append(data.View(entry_layout(tb), Cat(*words)))

        # The lane bounds clamped to 0..B in S3, the lane mask from them in S4 (short paths each).
        lo3, hi3 = Signal(range(B + 1)), Signal(range(B + 1))
        m.d.sync += [lo3.eq(clamp(delay(s2["lo"], 1, "lo3"))), hi3.eq(clamp(delay(s2["hi"], 1, "hi3")))]
        keep3 = delay(s2["keep"], 2, "keep3")
        s4 = {k: delay(s2[k], 3, f"s4_{k}") for k in ("valid", "last", "first", "rel")}
        s4["mask"] = Signal(B)
        m.d.sync += s4["mask"].eq(Cat(*((lo3 <= i) & (hi3 > i) & keep3[i] for i in range(B))))
        s4_index = [delay(x, 3, f"s4_index_{i}") for i, x in enumerate(s2["index"])]
        s4_tag = [delay(x, 3, f"s4_tag_{i}") for i, x in enumerate(s2["tag"])]

        # --- S4: compare the stored tag in 2-bit chunks (one LUT each, next to the block RAM output) ---
        chunks = (tb + 1) // 2
        s45 = {k: delay(s4[k], 1, f"s45_{k}") for k in ("valid", "last", "first", "rel", "mask")}
        s45_index = [delay(x, 1, f"s45_index_{i}") for i, x in enumerate(s4_index)]
        s45_eq = [Signal(chunks, name=f"s45_eq_{i}") for i in range(B)]
        s45_valid = Signal(B)
        s45_settled = Signal(B)
        for i, e in enumerate(entries):
            m.d.sync += s45_eq[i].eq(Cat(*(e.tag[2 * k:2 * k + 2] == s4_tag[i][2 * k:2 * k + 2]
                                           for k in range(chunks))))
        m.d.sync += [s45_valid.eq(Cat(*(e.valid for e in entries))), s45_settled.eq(Cat(*(e.settled for e in entries)))]

        # --- S4.5: the chunks combined -----------------------------------------------------------
        s5 = dict(valid=Signal(), last=Signal(), first=Signal(), rel=Signal(OFFSET_BITS), hit=Signal(B),
                  settled=Signal(B), index=[Signal(ib, name=f"s5_index_{i}") for i in range(B)])
        for k in ("valid", "last", "first", "rel"):
            m.d.sync += s5[k].eq(s45[k])
        m.d.sync += s5["hit"].eq(Cat(*(s45["mask"][i] & s45_valid[i] & s45_eq[i].all() for i in range(B))))
        m.d.sync += s5["settled"].eq(s45_settled)
        m.d.sync += [x.eq(y) for x, y in zip(s5["index"], s45_index)]

        # --- S5: the lowest hitting lane; S6: its bucket and position; S7: into the frame's slots ---
        hit = s5["hit"]
        def lowest(bits):     # (any set, index of the lowest set bit) as a tree of muxes
            if len(bits) == 1:
                return bits[0], Const(0, 1)
            half = 1 << ((len(bits) - 1).bit_length() - 1)
            a0, i0 = lowest(bits[:half])
            a1, i1 = lowest(bits[half:])
            width = (half - 1).bit_length() + 1
            return a0 | a1, Mux(a0, i0, Cat(i1, Const(0, width))[:width - 1] | (1 << (width - 1)))

        lane = Signal(range(B))
        m.d.comb += lane.eq(lowest(hit)[1])
        s6 = {k: delay(s5[k], 1, f"s6_{k}") for k in ("valid", "last", "first", "rel")}
        s6_index = [delay(x, 1, f"s6_index_{i}") for i, x in enumerate(s5["index"])]
        s6_settled = delay(s5["settled"], 1, "s6_settled")
        s6_lane, s6_any, s6_multi = Signal(range(B)), Signal(), Signal()
        def any_multi(bits):    # (any set, more than one set) as a tree of LUTs, no carry chain
            if len(bits) == 1:
                return bits[0], Const(0, 1)
            a0, m0 = any_multi(bits[:len(bits) // 2])
            a1, m1 = any_multi(bits[len(bits) // 2:])
            return a0 | a1, m0 | m1 | (a0 & a1)

        hit_any, hit_multi = any_multi(hit)
        m.d.sync += [s6_lane.eq(lane), s6_any.eq(hit_any), s6_multi.eq(hit_multi)]

        s7 = {k: delay(s6[k], 1, f"s7_{k}") for k in ("valid", "last", "first")}
        any_hit, multi = delay(s6_any, 1, "s7_any"), delay(s6_multi, 1, "s7_multi")
        new_hit = Signal(hit_layout(ib))
        m.d.sync += [new_hit.bucket.eq(Cat(*s6_index).word_select(s6_lane, ib)),
                     new_hit.pos.eq(s6["rel"] + s6_lane), new_hit.settled.eq(s6_settled.bit_select(s6_lane, 1))]
        lay = self.result.payload.shape()
        state = Signal(lay)
        cur, nxt = Signal(lay), Signal(lay)
        m.d.comb += cur.eq(Mux(s7["first"], 0, state))
        m.d.comb += nxt.eq(cur)
        with m.If(any_hit):
            with m.If(cur.n_hits == self.max_hits):
                m.d.comb += nxt.overflow.eq(1)
            with m.Else():
                m.d.comb += [nxt.hits[cur.n_hits].eq(new_hit), nxt.n_hits.eq(cur.n_hits + 1)]
                with m.If(~new_hit.settled):
                    m.d.comb += nxt.punt.eq(1)
            with m.If(multi):
                m.d.comb += nxt.overflow.eq(1)
        final = Signal(lay)
        m.d.comb += [final.eq(nxt), final.punt.eq(nxt.punt | nxt.overflow)]
        with m.If(s7["valid"]):
            m.d.sync += state.eq(nxt)
        m.d.comb += [fifo.w_en.eq(s7["valid"] & s7["last"]), fifo.w_data.eq(final)]
        return m

"""Management-plane register slave: AXI4-Lite decoder generated from :mod:`hdl.regs`.

Nothing here knows an address: every word, constant, reset value and counter comes from the
:class:`~hdl.regs.RegisterMap`, so the gateware, the host driver and the golden model cannot drift.
"""

from __future__ import annotations

import re

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .regs import BLOCK_STRIDE, OKAY, SLVERR, Access, RegisterMap
from .stream import AXILiteSignature

__all__ = ["CsrSlave", "READ_LATENCY", "READ_SAMPLE_DELAY", "COUNT_LATENCY"]

#: Cycles from the AR handshake cycle to the first cycle ``rvalid`` is high.
READ_LATENCY = 4
#: Cycles from the AR handshake to the cycle whose register values a read returns.
READ_SAMPLE_DELAY = 1
#: An amount driven on ``count(key)`` in cycle N is visible to reads whose AR handshake is in
#: cycle N + COUNT_LATENCY or later (one register stage on the input, one for the add).
COUNT_LATENCY = 2

# Word kinds carried from read stage 1 to stage 2.
_UNMAPPED, _PLAIN, _LO, _HI = range(4)


#: Counters per first-step group of the two-step counter read mux.
_GROUP = 4


def _chunks(items, n):
    items = list(items)
    return [items[i:i + n] for i in range(0, len(items), n)]


def _sanitize(key) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", "_".join(str(k) for k in key))


class CsrSlave(wiring.Component):
    """AXI4-Lite register slave with the NIC's self-describing block chain and 64-bit counters.

    The decoder is generated from ``regmap``: header words and CONST registers read as constants,
    RW registers are byte-writable storage reset to the block's values, COUNTER64 registers are
    64-bit wrapping counters incremented through :meth:`count`.

    Parameters
    ----------
    regmap:
        The register map (:func:`hdl.regs.build_register_map`).
    counter_init:
        Optional ``{event key: value}`` reset values for counters. For tests only (e.g. start a
        counter just below ``2**32`` to check the carry); real builds leave every counter at 0.

    Attributes
    ----------
    s_axil: In(AXILiteSignature(regmap.address_width))
        The register bus. Decodes word addresses (``addr[1:0]`` ignored). One read and one write
        in flight; ``arready``/``awready``/``wready`` are registers, never functions of ``*valid``.

    Notes
    -----
    Bus behaviour (what the golden model mirrors):

    * **Reads** take :data:`READ_LATENCY` = 4 cycles: stage 0 registers the address, stage 1
      samples the word (per-block muxes, counters in groups of four, registered) one cycle
      after the AR handshake, stage 1b picks the counter group, stage 2 selects the block and
      registers ``rdata``/``rresp``; ``rvalid`` then holds until ``rready``. ``arready`` is low
      from the AR handshake until the cycle after the R handshake (one read per 5 cycles).
      Unmapped: ``rresp`` = SLVERR, ``rdata`` = 0.
    * **Writes**: AW and W are buffered independently (either order or together). The write takes
      effect in the first cycle both are held and no B response is pending; ``bvalid`` rises the
      next cycle and holds until ``bready``. RW registers honour ``wstrb``; any other address
      (CONST, counter, unmapped) answers SLVERR and changes nothing.
    * **Counters**: ``count(key)`` is registered once, then added (64-bit, wrapping), so an amount
      driven in cycle N is in the counter from cycle N+2 (:data:`COUNT_LATENCY`). A read samples the
      counter register one cycle after its AR handshake (:data:`READ_SAMPLE_DELAY`), i.e. the value
      *before* the add committed at that clock edge; increments are never lost to reads (reads do not modify counters).
    * **Timing**: no mux is wider than one block's words/counters; the default build (24
      counters) routes at about 162 MHz on an ECP5-25F out of context (5.1k LUT, 2.3k FF).
    * **LO/HI coherence**: reading a counter's LO word returns bits 31:0 and latches bits 63:32
      of the same sample into the single shared latch, remembering which counter it belongs to.
      Reading a HI word returns the latch if the most recent LO read (of any counter) was this
      counter's LO, otherwise the *live* high word sampled at that read. Other reads and writes
      in between do not disturb the latch; reading HI does not clear it.
    """

    def __init__(self, regmap: RegisterMap, *, counter_init: dict | None = None):
        self.regmap = regmap
        self._events = regmap.counter_events()
        if len(set(self._events)) != len(self._events):
            raise ValueError("register map has duplicate counter event keys")
        counter_init = dict(counter_init or {})
        for key in counter_init:
            if key not in self._events:
                raise KeyError(self._unknown_key_msg(key))
        for b in regmap.blocks:
            if b.base % BLOCK_STRIDE:
                raise ValueError(f"block {b.type.name}#{b.instance} at {b.base:#x} is not stride aligned")

        self._count = {k: Signal(16, name=f"count_{_sanitize(k)}") for k in self._events}
        cw = regmap.counter_width
        self._counter = {k: Signal(cw, name=f"cnt_{_sanitize(k)}", init=counter_init.get(k, 0) % 2**cw)
                         for k in self._events}
        self._rw = {}
        for b in regmap.blocks:
            for reg in b.type.registers:
                if reg.access is Access.RW:
                    self._rw[(b.type.name, b.instance, reg.name)] = Signal(
                        32, name=f"rw_{b.type.name.lower()}{b.instance}_{reg.name.lower()}",
                        init=b.value(reg.name) & 0xFFFFFFFF)
        self._status = {(b.type.name, b.instance, reg.name): Signal(
                            32, name=f"status_{b.type.name.lower()}{b.instance}_{reg.name.lower()}")
                        for b in regmap.blocks for reg in b.type.registers if reg.access is Access.STATUS}
        super().__init__({"s_axil": In(AXILiteSignature(regmap.address_width))})

    # -- owner-facing API ------------------------------------------------------------------

    def _unknown_key_msg(self, key) -> str:
        return f"no counter for event {key!r}; valid keys: {', '.join(map(repr, self._events))}"

    def count(self, key) -> Signal:
        """The 16-bit increment input of the counter for event ``key`` (0 = no event this cycle)."""
        try:
            return self._count[tuple(key) if isinstance(key, list) else key]
        except (KeyError, TypeError):
            raise KeyError(self._unknown_key_msg(key)) from None

    def rw(self, block_name: str, instance: int, reg_name: str) -> Signal:
        """The current value of an RW register (read it in the owner's logic)."""
        try:
            return self._rw[(block_name, instance, reg_name)]
        except KeyError:
            raise KeyError(f"no RW register {block_name}#{instance}.{reg_name}; "
                           f"RW registers: {', '.join(f'{b}#{i}.{r}' for b, i, r in self._rw)}") from None

    def status(self, block_name: str, instance: int, reg_name: str) -> Signal:
        """The input behind a STATUS register: the owner drives the live value to be read."""
        try:
            return self._status[(block_name, instance, reg_name)]
        except KeyError:
            raise KeyError(f"no STATUS register {block_name}#{instance}.{reg_name}; "
                           f"STATUS registers: {', '.join(f'{b}#{i}.{r}' for b, i, r in self._status)}") from None

    # -- gateware --------------------------------------------------------------------------

    def _block_words(self, block):
        """``(offset_word, name, access, word_index)`` for the words of ``block``."""
        for addr, b, name, access, w in self.regmap.words():
            if b is block:
                yield (addr - b.base) >> 2, name, access, w

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        rmap = self.regmap
        aw = rmap.address_width
        off_bits = (BLOCK_STRIDE - 1).bit_length()        # byte-offset bits inside a block
        word_bits = aw - 2

        # ---- counters: register the increment (cuts the owner's logic from the 64-bit adder)
        for key in self._events:
            inc_r = Signal(16, name=f"inc_{_sanitize(key)}")
            m.d.sync += inc_r.eq(self._count[key])
            m.d.sync += self._counter[key].eq(self._counter[key] + inc_r)

        # ---- read channel: stage 1 muxes inside each block in parallel, stage 2 picks a block
        rd_busy = Signal()
        s1_valid = Signal()
        s1_block = Signal(range(max(1, len(rmap.blocks))))
        s1_hit = Signal()                                 # address falls in some block slot
        s1_word_addr = Signal(word_bits)
        s1 = []                                           # per block: (word, counter, kind)
        m.d.comb += bus.arready.eq(~rd_busy)
        ar_hs = bus.arvalid & ~rd_busy
        # Stage 0 registers the address: the master (e.g. the UART bridge) may sit across the
        # die, and decoding its address wires directly was the ULX3S critical path.
        s0_valid = Signal()
        s0_addr = Signal.like(bus.araddr)
        with m.If(ar_hs):
            m.d.sync += [rd_busy.eq(1), s0_valid.eq(1), s0_addr.eq(bus.araddr)]
        with m.If(s0_valid):
            m.d.sync += s0_valid.eq(0)
        offset = s0_addr[2:off_bits]
        blk_index = s0_addr[off_bits:]

        # The shared HI latch (stage 2 loads it on a LO read). Whether this read is the HI word
        # the latch belongs to is decided here in stage 1, off the critical rdata path.
        hi_latch = Signal(32)
        latch_valid = Signal()
        latch_hi_addr = Signal(word_bits)                 # word address of the HI word it belongs to
        s1_latch_match = Signal()

        with m.If(s0_valid):
            m.d.sync += [s1_valid.eq(1), s1_word_addr.eq(s0_addr[2:]), s1_hit.eq(0),
                         s1_latch_match.eq(latch_valid & (latch_hi_addr == s0_addr[2:]))]
            with m.Switch(blk_index):
                for i, b in enumerate(rmap.blocks):
                    with m.Case(b.base // BLOCK_STRIDE):
                        m.d.sync += [s1_block.eq(i), s1_hit.eq(1)]

        # Stage 1, per block: a small mux for CONST/RW words, and a separate 64-bit mux that picks
        # one counter by its 8-byte granule (counters are 8-byte aligned), so no mux is wider than
        # the block's counter count; the LO/HI choice is left to stage 2.
        granule = s0_addr[3:off_bits]
        group_vals, group_sel = [], []
        for i, b in enumerate(rmap.blocks):
            word = Signal(32, name=f"s1_word_{i}")
            kind = Signal(2, name=f"s1_kind_{i}")
            counters = dict(b.counters)
            cval = Signal(64, name=f"s1_cnt_{i}") if counters else None
            s1.append((word, cval, kind))
            n_groups = -(-len(counters) // _GROUP)
            group_vals.append([Signal(64, name=f"s1_cnt_{i}_g{g}") for g in range(n_groups)])
            group_sel.append(Signal(range(max(2, n_groups)), name=f"s1_group_{i}"))
            # Free-running (no enable): s0_addr holds still while the read is in flight, and
            # enables decoded from the address were a wide, slow fan-out.
            with m.Switch(offset):
                for woff, name, access, w in self._block_words(b):
                    with m.Case(woff):
                        if access is Access.CONST:
                            m.d.sync += [word.eq(rmap.const_value(b, name) & 0xFFFFFFFF), kind.eq(_PLAIN)]
                        elif access is Access.RW:
                            m.d.sync += [word.eq(self._rw[(b.type.name, b.instance, name)]),
                                         kind.eq(_PLAIN)]
                        elif access is Access.STATUS:
                            m.d.sync += [word.eq(self._status[(b.type.name, b.instance, name)]),
                                         kind.eq(_PLAIN)]
                        elif access is Access.COUNTER64:
                            if name not in counters:
                                raise ValueError(
                                    f"counter {b.type.name}#{b.instance}.{name} has no event key")
                            m.d.sync += kind.eq(_HI if w else _LO)
                        else:  # pragma: no cover - new Access kinds must be handled here
                            raise NotImplementedError(access)
                with m.Default():
                    m.d.sync += [kind.eq(_UNMAPPED), word.eq(0)]
            if counters:
                # Counters are picked in two steps, four per group here and the group in
                # stage 1b: a 10:1 mux of 64-bit counters spread over the die missed 156 MHz.
                for g, chunk in enumerate(_chunks(b.counters, _GROUP)):
                    with m.Switch(granule):
                        for name, key in chunk:
                            off = b.type.register(name).offset
                            if off % 8:
                                raise ValueError(
                                    f"counter {b.type.name}.{name} at {off:#x} is not 8-byte aligned")
                            with m.Case(off // 8):
                                m.d.sync += [group_vals[i][g].eq(self._counter[key]), group_sel[i].eq(g)]
                        with m.Default():
                            m.d.sync += group_vals[i][g].eq(0)

        # stage 1b: finish the counter pick; everything else is delayed alongside it
        s1b_valid, s1b_block, s1b_hit = Signal(), Signal.like(s1_block), Signal()
        s1b_word_addr, s1b_latch_match = Signal.like(s1_word_addr), Signal()
        m.d.sync += [s1b_valid.eq(s1_valid), s1b_block.eq(s1_block), s1b_hit.eq(s1_hit),
                     s1b_word_addr.eq(s1_word_addr), s1b_latch_match.eq(s1_latch_match)]
        with m.If(s1_valid):
            m.d.sync += s1_valid.eq(0)
        s1b = []
        for i, (word, cval, kind) in enumerate(s1):
            word_b, kind_b = Signal(32, name=f"s1b_word_{i}"), Signal(2, name=f"s1b_kind_{i}")
            m.d.sync += [word_b.eq(word), kind_b.eq(kind)]
            cval_b = None
            if cval is not None:
                cval_b = Signal(64, name=f"s1b_cnt_{i}")
                with m.Switch(group_sel[i]):
                    for g, val in enumerate(group_vals[i]):
                        with m.Case(g):
                            m.d.sync += cval_b.eq(val)
            s1b.append((word_b, cval_b, kind_b))

        # stage 2: block select + the shared HI latch
        sel_word = Signal(32)
        sel_cnt = Signal(64)
        sel_kind = Signal(2)
        with m.Switch(s1b_block):
            for i, (word, cval, kind) in enumerate(s1b):
                with m.Case(i):
                    m.d.comb += [sel_word.eq(word), sel_kind.eq(kind)]
                    if cval is not None:
                        m.d.comb += sel_cnt.eq(cval)
        with m.If(~s1b_hit):
            m.d.comb += sel_kind.eq(_UNMAPPED)

        with m.If(s1b_valid):
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(OKAY)]
            with m.Switch(sel_kind):
                with m.Case(_UNMAPPED):
                    m.d.sync += [bus.rresp.eq(SLVERR), bus.rdata.eq(0)]
                with m.Case(_PLAIN):
                    m.d.sync += bus.rdata.eq(sel_word)
                with m.Case(_LO):
                    m.d.sync += [bus.rdata.eq(sel_cnt[:32]), hi_latch.eq(sel_cnt[32:]), latch_valid.eq(1),
                                 latch_hi_addr.eq(s1b_word_addr + 1)]
                with m.Case(_HI):
                    with m.If(s1b_latch_match):
                        m.d.sync += bus.rdata.eq(hi_latch)
                    with m.Else():
                        m.d.sync += bus.rdata.eq(sel_cnt[32:])
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += [bus.rvalid.eq(0), rd_busy.eq(0)]

        # ---- write channel: AW and W each buffered once, write when both present and B is free
        aw_full = Signal()
        aw_word = Signal(word_bits)
        w_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(aw_full & w_full & ~bus.bvalid):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1), bus.bresp.eq(SLVERR)]
            with m.Switch(aw_word):
                for (bname, inst, rname), storage in self._rw.items():
                    b = rmap.block(bname, inst)
                    with m.Case(b.addr(rname) >> 2):
                        m.d.sync += bus.bresp.eq(OKAY)
                        for byte in range(4):
                            with m.If(w_strb[byte]):
                                m.d.sync += storage[8 * byte:8 * byte + 8].eq(w_data[8 * byte:8 * byte + 8])
        return m

"""The pipelined management-plane register slave (:class:`CsrSlave`), for large FPGAs.

:class:`~hdl.mgmt.csr_base.Csr` is the contract it shares with
:class:`~hdl.mgmt.csr_compact.CompactCsrSlave` (re-exported here); the counter stores are in
:mod:`hdl.mgmt.counters`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal

from hdl.lib.timing import LocalResets, keep_copy
from hdl.mgmt.counters import BramCounterBank, RegisterCounterStore
from hdl.mgmt.csr_base import (
    _GROUP,
    _HI,
    _LO,
    _PLAIN,
    _UNMAPPED,
    COUNT_LATENCY,
    READ_LATENCY,
    READ_SAMPLE_DELAY,
    Csr,
    _chunks,
    _one_hot_or,
    _or_all,
)
from hdl.mgmt.csr_compact import CompactCsrSlave
from hdl.mgmt.regs import BLOCK_STRIDE, OKAY, SLVERR, Access, RegisterMap

__all__ = ["Csr", "CsrSlave", "CompactCsrSlave", "COUNTER_STORES", "READ_LATENCY", "READ_SAMPLE_DELAY",
           "COUNT_LATENCY"]

#: The ``counter_store`` choices of :class:`CsrSlave`.
COUNTER_STORES = (RegisterCounterStore, BramCounterBank)
#: Block-RAM counter bank: cycles from the AR handshake to the first cycle in which a counter
#: read can take the flush engine's sum (the read's stage 2).
_BRAM_SAMPLE_DELAY_MIN = 5


class CsrSlave(Csr):
    """The pipelined CSR slave: every select and write enable a register, for ECP5 timing.

    Keeps the :class:`~hdl.mgmt.csr_base.Csr` contract (owner API, bus rules, attributes).

    Parameters
    ----------
    regmap:
        The register map (:func:`hdl.top.build_register_map`).
    counter_init:
        Optional ``{event key: value}`` reset values for counters (tests only).
    counter_store:
        The counter store class: :class:`~hdl.mgmt.counters.RegisterCounterStore` (default: one
        flip-flop register and adder per counter, fixed read latency; the netlist tuned for ECP5)
        or :class:`~hdl.mgmt.counters.BramCounterBank` (a bounded variable read latency for
        counters, see Notes; built in tests, where it checks the bank against the register store).

    Attributes
    ----------
    read_latency: int
        :data:`READ_LATENCY` = 6.
    read_latency_max: int
        :data:`READ_LATENCY` with the register store; ``flush_period + 5`` with the bank.
    count_latency: int
        :data:`COUNT_LATENCY` = 3 with the register store, 2 with the bank.

    Notes
    -----
    Bus behaviour (what the golden model mirrors):

    * **Reads** take :data:`READ_LATENCY` = 6 cycles: stage 0 registers the address, stage A
      copies it (once per block, so each block decodes a copy placed next to it), stage D
      decodes it into one-hot selects, stage 1 samples the word (per-block AND-OR muxes,
      counters in groups of four with the LO/HI half already chosen, registered) three cycles
      after the AR handshake, stage 1b ORs each block's groups, stage 2 ORs the blocks and registers
      ``rdata``/``rresp``; ``rvalid`` then holds until ``rready``. ``arready`` is low from the AR
      handshake until the cycle after the R handshake (one read per 7 cycles).
      Unmapped: ``rresp`` = SLVERR, ``rdata`` = 0.
    * **Writes**: AW and W are buffered independently (either order or together). The address is
      decoded in the two cycles after AW (block and word pre-decoded, then one registered hit
      per RW register); the write commits in
      the first cycle after that in which W is held and no B response is pending, registers its
      byte enables, and the data lands one cycle later, when ``bvalid`` rises; ``bvalid`` holds
      until ``bready``. RW registers honour ``wstrb``; any other address
      (CONST, counter, unmapped) answers SLVERR and changes nothing.
    * **Counters**: ``count(key)`` is registered twice, then added (64-bit, wrapping), so an amount
      driven in cycle N is in the counter from cycle N+3 (:data:`COUNT_LATENCY`). A read samples the
      counter register :data:`READ_SAMPLE_DELAY` = 3 cycles after its AR handshake, i.e. the value
      *before* the add committed at that clock edge; increments are never lost to reads (reads
      do not modify counters). STATUS inputs are registered on arrival, so a read returns the
      owner's value of the cycle before that sample.
    * **Timing**: every select and write enable is a register (decoded a stage ahead), no mux
      is wider than one block's words or four counters, and no read or write path decodes an
      address in the cycle it uses it: the CSR reaches across the die to the registers its
      blocks own, so its paths are mostly routing (see docs/performance.md).
    * **LO/HI coherence**: as :class:`~hdl.mgmt.csr_base.Csr` says.

    **Block-RAM counter bank** (``counter_store=BramCounterBank``, tests only: the flush engine
    is :class:`~hdl.mgmt.counters.BramCounterBank`):

    * A counter read (a LO word, or with 64-bit counters an HI word that does not hit the latch)
      waits in stage 2 for the write cycle of its counter and returns the value written then:
      its sample cycle is the first write cycle of the counter at least 5 cycles after the AR
      handshake (:meth:`sample_cycle`), and it holds every amount driven up to 2 cycles before
      (``count_latency`` = 2). ``rvalid`` rises the cycle after, so a counter read takes 6 to
      ``P + 5`` cycles (:attr:`read_latency_max`; 34 with the iCEBreaker's 28 counters); reads
      of other words take :data:`READ_LATENCY`. The HI latch, 32-bit HI words reading 0,
      writes and every other bus rule are as above. (:class:`~hdl.mgmt.csr_compact.CompactCsrSlave`
      answers 3 cycles sooner.)
    """

    def __init__(self, regmap: RegisterMap, *, counter_init: dict | None = None,
                 counter_store: type = RegisterCounterStore):
        self.regmap, self._store_class = regmap, counter_store    # for repr, even when refused
        if counter_store not in COUNTER_STORES:
            raise TypeError(f"counter_store must be one of {', '.join(c.__name__ for c in COUNTER_STORES)}, "
                            f"not {counter_store!r}")
        super().__init__(regmap, counter_store, counter_init=counter_init, storage_reset_less=True)
        self.read_latency = READ_LATENCY
        if counter_store is RegisterCounterStore:
            self._sample_delay_min = READ_SAMPLE_DELAY
            self.read_latency_max = READ_LATENCY
        else:
            self._sample_delay_min = _BRAM_SAMPLE_DELAY_MIN
            self.read_latency_max = self._sample_delay_min + self.flush_period

    def __repr__(self):
        store = "" if self._store_class is RegisterCounterStore else \
            f", counter_store={getattr(self._store_class, '__name__', repr(self._store_class))}"
        return f"CsrSlave({self.regmap!r}{store})"

    def _elaborate_bank_read(self, m, a_addr, s1b_valid, s1b_kind, s1b_latch_match, s1b_word_addr,
                             sel_out, hi_latch, latch_valid, latch_hi_addr, flush_rp, flush_sum):
        """Block-RAM counter bank, read stage 2: non-counter words and latched HI words answer at once; a
        counter read waits for the flush of its counter and takes the sum written in that cycle."""
        bus = self.s_axil
        wide = self.regmap.counter_width > 32             # 32-bit counters: HI words read 0, no latch
        # The counter index of the address (free-running: the address holds still while the read
        # is in flight), valid from 3 cycles after the AR handshake; at_k: the flush engine writes
        # that counter in this cycle (it read it in the last one), valid from stage 2 on.
        lo_addrs = [b.addr(name) for b in self.regmap.blocks for name, _ in b.counters]
        cnt_idx = Signal(range(len(lo_addrs)), name="cnt_idx", reset_less=True)
        with m.Switch(a_addr[3:]):
            for k, addr in enumerate(lo_addrs):
                with m.Case(addr >> 3):
                    m.d.sync += cnt_idx.eq(k)
            with m.Default():                             # not a counter: at_k unused
                m.d.sync += cnt_idx.eq(0)
        at_k = Signal(name="cnt_at_flush", reset_less=True)
        m.d.sync += at_k.eq(flush_rp == cnt_idx)

        is_counter = (s1b_kind == _LO) | ((s1b_kind == _HI) & ~s1b_latch_match) if wide else s1b_kind == _LO
        cnt_wait = Signal(name="cnt_wait")
        with m.If(s1b_valid):
            with m.If(is_counter):
                m.d.sync += cnt_wait.eq(1)
            with m.Else():
                m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(Mux(s1b_kind == _UNMAPPED, SLVERR, OKAY)),
                             bus.rdata.eq(Mux((s1b_kind == _HI) & s1b_latch_match, hi_latch, sel_out)
                                          if wide else sel_out)]
        with m.If(((s1b_valid & is_counter) | cnt_wait) & at_k):
            m.d.sync += [cnt_wait.eq(0), bus.rvalid.eq(1), bus.rresp.eq(OKAY), bus.rdata.eq(flush_sum[:32])]
            if wide:
                with m.If(s1b_kind == _HI):
                    m.d.sync += bus.rdata.eq(flush_sum[32:64])
                with m.Else():
                    m.d.sync += [hi_latch.eq(flush_sum[32:64]), latch_valid.eq(1),
                                 latch_hi_addr.eq(s1b_word_addr + 1)]

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        rmap = self.regmap
        aw = rmap.address_width
        off_bits = (BLOCK_STRIDE - 1).bit_length()        # byte-offset bits inside a block
        word_bits = aw - 2
        bram = isinstance(self.counter_store, BramCounterBank) and bool(self._events)

        # Counters and RW storage take their reset from a copy of the domain's reset per block
        # (per group of four counters), a cycle late: one reset flip-flop driving every counter
        # and RW register crossed the ULX3S die (5.1 ns, a critical path). They are reset-less
        # and cleared by the copy. An event reaches its counter through two increment registers
        # (below), and a counter's reset copy is two cycles late to match, so no event from the
        # first cycle out of reset is lost and none from the cycle reset rose leaks past it.
        local_reset = LocalResets(m)

        if bram:
            flush_rp, flush_sum = self.counter_store.elaborate(m, platform)
        elif isinstance(self.counter_store, RegisterCounterStore):
            self.counter_store.elaborate(m, local_reset)

        # Data and select registers of both channels are reset-less (only valid/state bits,
        # counters and RW storage are reset), so the reset net reaches few flip-flops: from
        # the reset synchronizer it crossed the die on the ULX3S.
        # ---- read channel: stage 0 registers the address, stage D decodes it into registered
        # one-hot selects per block and counter group, stage 1 muxes inside each block in
        # parallel (AND-OR on those selects), stage 1b finishes the counter pick, stage 2 picks
        # the block. No select is decoded in the cycle it is used: on the ULX3S, address decode
        # fanning out to muxes spread over the die was the critical path.
        rd_busy = Signal()
        m.d.comb += bus.arready.eq(~rd_busy)
        ar_hs = bus.arvalid & ~rd_busy
        s0_valid = Signal()
        s0_addr = Signal.like(bus.araddr)
        with m.If(ar_hs):
            m.d.sync += [rd_busy.eq(1), s0_valid.eq(1), s0_addr.eq(bus.araddr)]
        with m.If(s0_valid):
            m.d.sync += s0_valid.eq(0)
        # Stage A copies the address, once for the central control and once per block, so each
        # block's select decode below reads a copy the placer can put next to it: the decode
        # straight from s0_addr (placed by the bus master) was the ULX3S critical path.
        a_valid = Signal()
        a_addr = keep_copy(s0_addr, name="a_addr")
        m.d.sync += [a_valid.eq(s0_valid), a_addr.eq(s0_addr)]
        blk_index = a_addr[off_bits:]

        # The shared HI latch (stage 2 loads it on a LO read). Whether this read is the HI word
        # the latch belongs to is decided in stage D, off the critical rdata path.
        hi_latch = Signal(32)
        latch_valid = Signal()
        latch_hi_addr = Signal(word_bits)                 # word address of the HI word it belongs to

        d_valid, d_block, d_hit = Signal(), Signal(range(max(1, len(rmap.blocks)))), Signal()
        d_word_addr, d_latch_match = Signal(word_bits, reset_less=True), Signal()
        m.d.sync += d_valid.eq(a_valid)
        with m.If(a_valid):
            m.d.sync += [d_word_addr.eq(a_addr[2:]), d_hit.eq(0),
                         d_latch_match.eq(latch_valid & (latch_hi_addr == a_addr[2:]))]
            with m.Switch(blk_index):
                for i, b in enumerate(rmap.blocks):
                    with m.Case(b.base // BLOCK_STRIDE):
                        m.d.sync += [d_block.eq(i), d_hit.eq(1)]

        s1_valid, s1_block, s1_hit = Signal(), Signal.like(d_block), Signal()
        s1_word_addr, s1_latch_match = Signal(word_bits), Signal()
        m.d.sync += [s1_valid.eq(d_valid), s1_block.eq(d_block), s1_hit.eq(d_hit),
                     s1_word_addr.eq(d_word_addr), s1_latch_match.eq(d_latch_match)]

        # Stage D and 1, per block: a one-hot mux for CONST/RW/STATUS words, and a separate
        # 32-bit mux per group of four counters picked by their 8-byte granule (counters are
        # 8-byte aligned), so no mux is wider than four counters; the groups are ORed in
        # stage 1b and the blocks in stage 2. Both stages run free: s0_addr holds still while
        # the read is in flight.
        s1 = []                                           # per block: (word, has counters, kind)
        group_vals = {}                                   # block index -> (halves, highs) of its counters
        for i, b in enumerate(rmap.blocks):
            tag = f"{b.type.name.lower()}{b.instance}"
            local_addr = keep_copy(s0_addr[:off_bits], name=f"a_addr_{tag}")
            m.d.sync += local_addr.eq(s0_addr[:off_bits])
            offset = local_addr[2:]
            granule = local_addr[3:]
            kind_d = Signal(2, name=f"d_kind_{tag}", reset_less=True)
            word_srcs, word_sels = [], []
            with m.Switch(offset):
                for woff, name, access, w in self._block_words(b):
                    with m.Case(woff):
                        m.d.sync += kind_d.eq(_HI if w else _LO) if access is Access.COUNTER64 \
                            else kind_d.eq(_PLAIN)
                    if access is Access.COUNTER64:
                        if name not in dict(b.counters):
                            raise ValueError(f"counter {b.type.name}#{b.instance}.{name} has no event key")
                        continue
                    if access is Access.CONST:
                        src = Const(rmap.const_value(b, name) & 0xFFFFFFFF, 32)
                        if src.value == 0:
                            continue
                    elif access is Access.RW:
                        src = self._rw[(b.type.name, b.instance, name)]
                    elif access is Access.STATUS:
                        # Registered where it arrives: the owner (e.g. a signature checker at an
                        # egress port) may sit across the die.
                        src = Signal(32, name=f"status_q_{tag}_{name.lower()}", reset_less=True)
                        m.d.sync += src.eq(self._status[(b.type.name, b.instance, name)])
                    else:  # pragma: no cover - new Access kinds must be handled here
                        raise NotImplementedError(access)
                    sel = Signal(name=f"d_sel_{tag}_{name.lower()}", reset_less=True)
                    m.d.sync += sel.eq(offset == woff)
                    word_srcs.append(src)
                    word_sels.append(sel)
                with m.Default():
                    m.d.sync += kind_d.eq(_UNMAPPED)

            # Words are picked in groups of four here and the groups ORed in stage 1b: one
            # AND-OR over a block's 20-odd words (LINETEST) was a ULX3S critical path.
            word_groups = []
            for g, (sels, srcs) in enumerate(zip(_chunks(word_sels, _GROUP), _chunks(word_srcs, _GROUP))):
                group = Signal(32, name=f"s1_word_{i}_g{g}", reset_less=True)
                m.d.sync += group.eq(_one_hot_or(sels, srcs, 32))
                word_groups.append(group)
            word = _or_all(word_groups, 32)
            kind = Signal(2, name=f"s1_kind_{i}", reset_less=True)
            m.d.sync += kind.eq(kind_d)
            counters = b.counters
            s1.append((word, bool(counters) and not bram, kind))
            if bram:                                      # counters are read from the flush engine
                for name, _key in counters:
                    if b.type.register(name).offset % 8:
                        raise ValueError(f"counter {b.type.name}.{name} at {b.type.register(name).offset:#x} "
                                         "is not 8-byte aligned")
                continue
            # Counters are muxed in groups of four by their one-hot granule selects. Only the
            # addressed counter's group is non-zero, so stage 1b just ORs the groups. The LO/HI
            # half is chosen here too (from the stage-D kind register, next to the counters):
            # a group mux followed by a LO/HI mux in stage 1b was a ULX3S critical path.
            is_hi_d = kind_d == _HI
            halves, highs = [], []
            for g, chunk in enumerate(_chunks(counters, _GROUP)):
                sels = []
                for name, _key in chunk:
                    off = b.type.register(name).offset
                    if off % 8:
                        raise ValueError(f"counter {b.type.name}.{name} at {off:#x} is not 8-byte aligned")
                    sel = Signal(name=f"d_sel_{tag}_{name.lower()}", reset_less=True)
                    m.d.sync += sel.eq(granule == off // 8)
                    sels.append(sel)
                values = [self.counter_store.value(k) for _, k in chunk]
                half = Signal(32, name=f"s1_cnt_{i}_g{g}", reset_less=True)       # the word read
                high = Signal(32, name=f"s1_cnt_hi_{i}_g{g}", reset_less=True)    # for the HI latch
                m.d.sync += [half.eq(_one_hot_or(sels, [Mux(is_hi_d, v[32:], v[:32]) for v in values], 32)),
                             high.eq(_one_hot_or(sels, [v[32:] for v in values], 32))]
                halves.append(half)
                highs.append(high)
            group_vals[i] = (halves, highs)

        # stage 1b: OR each block's word and counter groups into the word it returns, so that
        # stage 2 is an AND-OR over one-hot block selects (a mux on the block index and the
        # word kind into rdata was a ULX3S critical path).
        s1b_valid, s1b_word_addr, s1b_latch_match = Signal(), Signal.like(s1_word_addr), Signal()
        s1b_kind = Signal(2)                              # the addressed block's kind, or UNMAPPED
        m.d.sync += [s1b_valid.eq(s1_valid), s1b_word_addr.eq(s1_word_addr),
                     s1b_latch_match.eq(s1_latch_match), s1b_kind.eq(_UNMAPPED)]
        with m.If(s1_hit):
            with m.Switch(s1_block):
                for i, (_, _, kind) in enumerate(s1):
                    with m.Case(i):
                        m.d.sync += s1b_kind.eq(kind)
        block_sels, block_words, block_his = [], [], []
        for i, (word, has_counters, _kind) in enumerate(s1):
            sel = Signal(name=f"s1b_sel_{i}", reset_less=True)
            out = Signal(32, name=f"s1b_out_{i}", reset_less=True)          # what this block returns
            m.d.sync += [sel.eq(s1_hit & (s1_block == i)), out.eq(word)]
            block_sels.append(sel)
            block_words.append(out)
            if not has_counters:
                continue
            halves, highs = group_vals[i]
            hi = Signal(32, name=f"s1b_hi_{i}", reset_less=True)            # the high word, for the HI latch
            m.d.sync += [hi.eq(_or_all(highs, 32)), out.eq(word | _or_all(halves, 32))]
            block_his.append((sel, hi))

        # stage 2: block select + the shared HI latch
        sel_out = _one_hot_or(block_sels, block_words, 32)
        sel_hi = _one_hot_or([s for s, _ in block_his], [h for _, h in block_his], 32)
        if not bram:
            with m.If(s1b_valid):
                m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(Mux(s1b_kind == _UNMAPPED, SLVERR, OKAY)),
                             bus.rdata.eq(Mux((s1b_kind == _HI) & s1b_latch_match, hi_latch, sel_out))]
                with m.If(s1b_kind == _LO):
                    m.d.sync += [hi_latch.eq(sel_hi), latch_valid.eq(1), latch_hi_addr.eq(s1b_word_addr + 1)]
        else:
            self._elaborate_bank_read(m, a_addr, s1b_valid, s1b_kind, s1b_latch_match, s1b_word_addr,
                                      sel_out, hi_latch, latch_valid, latch_hi_addr, flush_rp, flush_sum)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += [bus.rvalid.eq(0), rd_busy.eq(0)]

        # ---- write channel: AW and W each buffered once, then a three-step commit.
        # The address is decoded by free-running compares into one registered hit bit per RW
        # register, the byte enables are registered from those hits, and the storage takes
        # the data the cycle after: every storage enable comes straight from a flip-flop. The
        # combinational decode into each register's enable (aw_word -> compare -> wstrb -> CE)
        # crossed the die and was the ULX3S critical path.
        aw_full = Signal()
        aw_word = Signal(word_bits)
        aw_decoded = Signal()                             # the pre-decode below reflects aw_word
        aw_settled = Signal()                             # the hits below reflect aw_word
        w_full = Signal()
        w_data = Signal(32, reset_less=True)
        w_strb = Signal(4, reset_less=True)
        commit = Signal()                                 # registering the byte enables
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        m.d.sync += [aw_decoded.eq(aw_full), aw_settled.eq(aw_decoded)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        # The word address is pre-decoded in two registered halves, the block (one select per
        # block with RW registers) and the word inside it (one per word offset in use), so each
        # hit is a 2-input AND: compared whole, ABC shared sub-terms across the 40-odd compares
        # into a four-LUT chain (a ULX3S critical path).
        lo_bits = off_bits - 2
        pre_block, pre_word = {}, {}

        def pre_decode(table, value, field, name):
            if value not in table:
                table[value] = Signal(name=f"wr_pre_{name}{value}", reset_less=True)
                m.d.sync += table[value].eq(field == value)
            return table[value]

        hits = []
        for (bname, inst, rname), storage in self._rw.items():
            tag = f"{bname.lower()}{inst}_{rname.lower()}"
            hit = Signal(name=f"wr_hit_{tag}", reset_less=True)
            word = rmap.block(bname, inst).addr(rname) >> 2
            m.d.sync += hit.eq(pre_decode(pre_block, word >> lo_bits, aw_word[lo_bits:], "block")
                               & pre_decode(pre_word, word & ((1 << lo_bits) - 1), aw_word[:lo_bits], "word"))
            # Reset-less: a stale enable in the cycle out of reset is overridden by the clear.
            enable = Signal(4, name=f"wr_en_{tag}", reset_less=True)
            m.d.sync += enable.eq(Mux(commit & hit, w_strb, 0))
            with m.If(local_reset(f"rw_{bname.lower()}{inst}")):
                m.d.sync += storage.eq(storage.init)
            with m.Else():
                for byte in range(4):
                    with m.If(enable[byte]):
                        m.d.sync += storage[8 * byte:8 * byte + 8].eq(w_data[8 * byte:8 * byte + 8])
            hits.append(hit)
        any_hit = Cat(*hits).any() if hits else 0

        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        m.d.sync += commit.eq(0)
        with m.If(aw_settled & w_full & ~bus.bvalid & ~commit):
            m.d.sync += commit.eq(1)
        with m.If(commit):
            # The enables are registered at this edge and the data lands at the next one. W may
            # be refilled at that edge at the earliest, so w_data is still this write's there;
            # a read whose AR comes with or after B samples the storage after it has landed.
            m.d.sync += [aw_full.eq(0), w_full.eq(0), aw_decoded.eq(0), aw_settled.eq(0), bus.bvalid.eq(1),
                         bus.bresp.eq(Mux(any_hit, OKAY, SLVERR))]
        return m

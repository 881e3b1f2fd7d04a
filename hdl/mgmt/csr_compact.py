"""The compact management-plane register slave (:class:`CompactCsrSlave`), for small FPGAs."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal

from hdl.mgmt.counters import BramCounterBank
from hdl.mgmt.csr_base import _HI, _LO, _PLAIN, _UNMAPPED, Csr, _ram
from hdl.mgmt.regs import BLOCK_STRIDE, OKAY, SLVERR, Access, RegisterMap

__all__ = ["CompactCsrSlave"]

#: The cycle after the AR handshake decodes the registered address into registers and the next
#: answers, so ``rvalid`` rises 3 cycles after the handshake; a counter read can take the flush
#: engine's sum from 2 cycles after it on.
_COMPACT_READ_LATENCY = 3
_COMPACT_SAMPLE_DELAY_MIN = 2


class CompactCsrSlave(Csr):
    """The compact CSR slave: one cycle of decode, RW reads from a block-RAM copy, counters in a
    :class:`~hdl.mgmt.counters.BramCounterBank`; for small, slow FPGAs (iCE40).

    Keeps the :class:`~hdl.mgmt.csr_base.Csr` contract (owner API, bus rules, attributes).

    Parameters
    ----------
    regmap:
        The register map (:func:`hdl.top.build_register_map`).
    counter_init:
        Optional ``{event key: value}`` reset values for counters (tests only).

    Attributes
    ----------
    read_latency: int
        3.
    read_latency_max: int
        ``flush_period + 2`` for counter reads, or ``2**bits + 4`` for an RW read right after a
        reset if that is more (see Notes).
    count_latency: int
        2 (the bank's).

    Notes
    -----
    Why: at the iCEBreaker's 24 MHz the pipelining of :class:`~hdl.mgmt.csr.CsrSlave` buys
    nothing, and on the iCE40UP5K (a logic cell is one LUT4 and one flip-flop) its registers,
    the STATUS input registers, the read mux over the RW registers' flip-flops and Yosys'
    read-during-write emulation around the counter RAM were about 1,000 of the CSR's 2,700 logic
    cells. What differs from CsrSlave's rules (everything else holds: SLVERR, ``wstrb``, the HI
    latch, ``arready``, counter sampling by the flush engine):

    * **Reads** take :attr:`read_latency` = 3 cycles: the AR handshake registers the address, the
      next cycle decodes it into registers (the word's kind, its counter's flush slot, the value
      of a CONST word or of a STATUS input as the owner drives it then: STATUS inputs are not
      registered on arrival), the cycle after registers the word into ``rdata`` (an RW word
      from the shadow below). A counter read answers in the first write cycle of its counter
      from that cycle on (its sample cycle: at least 2 cycles after the AR handshake), so it
      takes 3 to ``P + 2`` cycles. ``arready`` returns the cycle after the R handshake.
    * **RW shadow**: RW words are read from a block-RAM copy of the RW registers (2 SB_RAM40_4K on
      iCE40); every write goes to the register and the copy. The word at word address ``a`` is in
      row ``a % 2**bits``, ``bits`` being the fewest low address bits that tell the RW words
      apart (5 on the iCEBreaker). A second copy, never written, holds the reset values: a reset
      puts the RW flip-flops back but not the RAM, so after every reset a sweep of
      ``2**bits + 1`` cycles copies the reset values back. Until it has ended no write commits
      and no RW read answers, so an RW read right after a reset can take
      :attr:`read_latency_max` (``2**bits + 4``). The RAM is not read in a cycle in which it is
      written, so an RW read takes 4 cycles if a write commits in the cycle after its AR
      handshake.
    * **Writes**: the address is decoded in the cycle after AW, as above; the write commits in
      the first cycle after that in which W is held, no B response is pending and no sweep
      runs: the RW register and its copy take the bytes of ``wstrb`` at the end of that cycle,
      and ``bvalid`` rises with them (one cycle sooner than above).
    * **Timing**: the address decode is one cycle of logic, the answer (and the write commit)
      another (about 26 ns for the longest on the UP5K, 39 MHz). On iCE40
      (:func:`hdl.lib.ram.is_ice40` platforms, as on the board) the counter bank
      and the shadow are SB_RAM40_4K instances, since for an Amaranth memory Yosys adds
      read-during-write emulation in logic (see :mod:`hdl.lib.ram`); neither RAM is ever read at the
      row written in the same cycle, so the instances behave as the memories do in simulation.
    """

    def __init__(self, regmap: RegisterMap, *, counter_init: dict | None = None):
        super().__init__(regmap, BramCounterBank, counter_init=counter_init, storage_reset_less=False)
        self.read_latency = _COMPACT_READ_LATENCY
        self._sample_delay_min = _COMPACT_SAMPLE_DELAY_MIN
        self.read_latency_max = self._sample_delay_min + self.flush_period
        # The fewest low word-address bits that tell the RW words apart (rows of the shadow
        # copy); after a reset, reads wait for the 2**bits + 1 cycle shadow sweep.
        rw_words = [b.addr(r.name) >> 2 for b in regmap.blocks for r in b.type.registers
                    if r.access is Access.RW]
        self._shadow_bits = next(n for n in range(regmap.address_width)
                                 if len({a % (1 << n) for a in rw_words}) == len(rw_words))
        self._shadow_sweep = (1 << self._shadow_bits) + 1 if rw_words else 0
        self.read_latency_max = max(self.read_latency_max, self._shadow_sweep + 3)

    def __repr__(self):
        return f"CompactCsrSlave({self.regmap!r})"

    def elaborate(self, platform):
        """See the class Notes. Reads decode the registered address into registers and answer in
        the next cycle; RW words come from a block-RAM copy (:meth:`_elaborate_shadow`), not
        from a mux over their flip-flops.
        """
        m = Module()
        bus = self.s_axil
        rmap = self.regmap
        events = self._events
        wide = rmap.counter_width > 32                    # 32-bit counters: HI words read 0, no latch
        word_bits = rmap.address_width - 2
        if events:
            flush_rp, flush_sum = self.counter_store.elaborate(m, platform)

        # ---- read channel. The AR handshake registers the word address; the next cycle decodes
        # it into registers; the cycle after answers, except a counter read, which waits for the
        # flush engine to write its counter and answers with that sum, and an RW read, which
        # waits while the shadow is being restored or written. The address holds still until the
        # R handshake, so the decode stays valid while a read waits.
        rd_busy = Signal()                                # from the AR handshake to the R handshake
        rd_decode = Signal()                              # address registered, being decoded
        rd_pend = Signal()                                # decoded, not answered yet
        r_addr = Signal(word_bits, reset_less=True)
        m.d.comb += bus.arready.eq(~rd_busy)
        with m.If(bus.arvalid & ~rd_busy):
            m.d.sync += [rd_busy.eq(1), rd_decode.eq(1), r_addr.eq(bus.araddr[2:])]
        with m.If(rd_decode):
            m.d.sync += [rd_decode.eq(0), rd_pend.eq(1)]

        aw_word = Signal(word_bits, reset_less=True)      # the write channel's buffered address
        w_data = Signal(32, reset_less=True)
        w_strb = Signal(4, reset_less=True)
        commit = Signal()                                 # a write lands at the end of this cycle
        rw_hit = Signal()                                 # aw_word is an RW word (once settled)
        shadow_word, shadow_ready, shadow_idle = self._elaborate_shadow(
            m, platform, r_addr, aw_word, w_data, w_strb, commit & rw_hit)

        # The decode: the word's kind, whether it is RW, its counter's flush slot (counter k is
        # written by the flush engine in the cycles in which its read pointer is (k + 1) %
        # flush_period: it read bank[k] in the cycle before) and its value if it is a CONST or
        # STATUS word; registered, so that the answer logic starts at flip-flops. In two levels,
        # the block (high address bits) over the word in it (low bits), which maps to fewer LUT
        # levels than one decode of the whole address.
        kind_d = Signal(2, init=_UNMAPPED)
        is_rw_d = Signal()
        flush_at_d = Signal(range(max(2, len(events) + 1)))
        word_d = Signal(32)
        off_words = (BLOCK_STRIDE - 1).bit_length() - 2
        with m.Switch(r_addr[off_words:]):
            for b in rmap.blocks:
                with m.Case(b.base // BLOCK_STRIDE), m.Switch(r_addr[:off_words]):
                    for woff, name, access, w in self._block_words(b):
                        with m.Case(woff):
                            if access is Access.COUNTER64:
                                key = dict(b.counters).get(name)
                                if key is None:
                                    raise ValueError(f"counter {b.type.name}#{b.instance}.{name} has no event key")
                                if wide or not w:         # a 32-bit counter's HI word: a plain 0
                                    m.d.comb += [kind_d.eq(_HI if w else _LO),
                                                 flush_at_d.eq((events.index(key) + 1) % self.flush_period)]
                                else:
                                    m.d.comb += kind_d.eq(_PLAIN)
                                continue
                            m.d.comb += kind_d.eq(_PLAIN)
                            if access is Access.CONST:
                                m.d.comb += word_d.eq(rmap.const_value(b, name) & 0xFFFFFFFF)
                            elif access is Access.RW:
                                m.d.comb += is_rw_d.eq(1)
                            elif access is Access.STATUS:
                                m.d.comb += word_d.eq(self._status[(b.type.name, b.instance, name)])
                            else:  # pragma: no cover - new Access kinds must be handled here
                                raise NotImplementedError(access)
        kind = Signal.like(kind_d, reset_less=True)
        is_rw = Signal.like(is_rw_d, reset_less=True)
        flush_at = Signal.like(flush_at_d, reset_less=True)
        const_or_status = Signal.like(word_d, reset_less=True)
        m.d.sync += [kind.eq(kind_d), is_rw.eq(is_rw_d), flush_at.eq(flush_at_d), const_or_status.eq(word_d)]
        word = Mux(is_rw, shadow_word, const_or_status)   # unless it is a counter

        # The HI latch: a LO read loads it with the high word of the same sum, and an HI read of
        # the same counter (same 8-byte granule) returns it until another LO read reloads it.
        if wide:
            hi_latch = Signal(32, reset_less=True)
            latch_valid = Signal()
            latch_granule = Signal(word_bits - 1, reset_less=True)
            latched = (kind == _HI) & latch_valid & (latch_granule == r_addr[1:])
            is_counter = (kind == _LO) | ((kind == _HI) & ~latched)
            counter_word = Mux(kind == _HI, flush_sum[32:64], flush_sum[:32])
            other_word = Mux(latched, hi_latch, word)
        else:
            is_counter = kind == _LO
            counter_word = flush_sum if events else 0
            other_word = word
        at_flush = flush_rp == flush_at if events else 0

        with m.If(rd_pend & Mux(is_counter, at_flush, ~is_rw | shadow_ready)):
            m.d.sync += [rd_pend.eq(0), bus.rvalid.eq(1), bus.rresp.eq(Mux(kind == _UNMAPPED, SLVERR, OKAY)),
                         bus.rdata.eq(Mux(is_counter, counter_word, other_word))]
            if wide:
                with m.If(kind == _LO):
                    m.d.sync += [hi_latch.eq(flush_sum[32:64]), latch_valid.eq(1), latch_granule.eq(r_addr[1:])]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += [bus.rvalid.eq(0), rd_busy.eq(0)]

        # ---- write channel: AW and W each buffered once. The address is decoded in the cycle
        # after AW, into one registered hit per RW register; in the first cycle after that in
        # which W is held, no B response is pending and the shadow is not being restored, the
        # write commits: the addressed RW register (and its shadow row) takes the bytes of wstrb
        # and bvalid rises.
        aw_full = Signal()
        aw_settled = Signal()                             # the hits below reflect aw_word
        w_full = Signal()
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        m.d.sync += aw_settled.eq(aw_full & ~commit)
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        m.d.comb += commit.eq(aw_settled & w_full & ~bus.bvalid & shadow_idle)

        # The byte strobes are applied in each flip-flop's own LUT (an AND-OR, which Yosys does
        # not turn into per-byte enables), so each register needs one enable, not four.
        strb_mask = Cat(*(w_strb[byte].replicate(8) for byte in range(4)))
        hits = []
        for (bname, inst, rname), storage in self._rw.items():
            hit = Signal(name=f"wr_hit_{bname.lower()}{inst}_{rname.lower()}", reset_less=True)
            m.d.sync += hit.eq(aw_word == rmap.block(bname, inst).addr(rname) >> 2)
            with m.If(commit & hit):
                m.d.sync += storage.eq((w_data & strb_mask) | (storage & ~strb_mask))
            hits.append(hit)
        m.d.comb += rw_hit.eq(Cat(*hits).any() if hits else 0)

        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(commit):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1), bus.bresp.eq(Mux(rw_hit, OKAY, SLVERR))]
        return m

    def _elaborate_shadow(self, m, platform, r_addr, aw_word, w_data, w_strb, write):
        """The block-RAM copy of the RW registers that reads return.

        The RW word at word address ``a`` is in row ``a % 2**bits`` (``bits``: the fewest low
        address bits that tell the RW words apart), its reset value in row ``2**bits + a % 2**bits``
        (never written). A reset puts the RW flip-flops back to their reset values but not the
        RAM, so after every reset a sweep copies the reset rows over the others, one row per
        cycle, for :attr:`_shadow_sweep` cycles; meanwhile writes do not commit.

        The read port reads the row of the registered read address ``r_addr`` in every cycle,
        except while the sweep runs and in cycles in which a write commits (then it reads
        nothing: a read of the row being written would be undefined on iCE40). Returns
        ``(word, ready, idle)``: the word read in the last cycle; whether that was a read of
        ``r_addr`` that saw every write committed before it; and whether writes may commit (no
        sweep).
        """
        if not self._rw:
            return Const(0, 32), Const(1), Const(1)
        bits = self._shadow_bits
        rows = [0] * (1 << bits)
        for (bname, inst, rname), storage in self._rw.items():
            rows[(self.regmap.block(bname, inst).addr(rname) >> 2) % (1 << bits)] = storage.init
        rd, wr = _ram(m, "rw_shadow", 32, rows + rows, platform, granularity=8)

        # The sweep reads reset row s in cycle s = 0 .. 2**bits - 1 after a reset and writes it
        # to row s in the next cycle; it ends with that last write.
        sweeping = Signal(init=1, name="shadow_sweeping")
        sweep = Signal(bits + 1, name="shadow_sweep")    # sweep[bits]: every reset row read
        copy = Signal(name="shadow_copy")
        copy_row = Signal(bits, name="shadow_copy_row", reset_less=True)
        with m.If(sweeping):
            m.d.sync += sweep.eq(sweep + 1)
            with m.If(sweep[bits]):
                m.d.sync += sweeping.eq(0)
        m.d.sync += [copy.eq(sweeping & ~sweep[bits]), copy_row.eq(sweep[:bits])]

        ready = Signal(name="shadow_ready")
        m.d.sync += ready.eq(~sweeping & ~write)
        m.d.comb += [rd.addr.eq(Mux(sweeping, Cat(sweep[:bits], 1), Cat(r_addr[:bits], 0))),
                     rd.en.eq(~write),
                     wr.addr.eq(Cat(Mux(copy, copy_row, aw_word[:bits]), 0)),
                     wr.data.eq(Mux(copy, rd.data, w_data)),
                     wr.en.eq(Mux(copy, 0b1111, Mux(write, w_strb, 0)))]
        return rd.data, ready, ~sweeping

"""Management-plane register slave: AXI4-Lite decoder generated from :mod:`hdl.mgmt.regs`.

Nothing here knows an address: every word, constant, reset value and counter comes from the
:class:`~hdl.mgmt.regs.RegisterMap`, so the gateware, the host driver and the golden model cannot drift.
"""

from __future__ import annotations

import re

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hdl.lib.ram import is_ice40
from hdl.lib.stream import AXILiteSignature
from hdl.lib.timing import keep_copy
from hdl.mgmt.regs import BLOCK_STRIDE, OKAY, SLVERR, Access, Block, Register, RegisterMap

__all__ = ["CsrSlave", "COUNTER_STORES", "READ_LATENCY", "READ_SAMPLE_DELAY", "COUNT_LATENCY"]

#: The ``counter_store`` choices of :class:`CsrSlave`.
COUNTER_STORES = ("registers", "bram")

# The three constants below are the register store's (``counter_store="registers"``); a
# CsrSlave instance carries the figures of its own store and bus logic as attributes
# (``read_latency``, ``read_latency_max``, ``count_latency``, :meth:`CsrSlave.sample_cycle`).

#: Cycles from the AR handshake cycle to the first cycle ``rvalid`` is high (every read in the
#: register store; every non-counter read of the pipelined bus logic in both stores).
READ_LATENCY = 6
#: Cycles from the AR handshake to the cycle whose register values a read returns.
READ_SAMPLE_DELAY = 3
#: An amount driven on ``count(key)`` in cycle N is visible to reads whose AR handshake is in
#: cycle N + COUNT_LATENCY or later (two register stages on the input, one for the add); it is in
#: the counter value of cycle N + COUNT_LATENCY, which reads sample READ_SAMPLE_DELAY cycles
#: after their AR handshake.
COUNT_LATENCY = 3
#: bram store, pipelined bus logic: cycles from the AR handshake to the first cycle in which a
#: counter read can take the flush engine's sum (the read's stage 2).
_BRAM_SAMPLE_DELAY_MIN = 5
#: Compact bus logic: the cycle after the AR handshake decodes the registered address into
#: registers and the next answers, so ``rvalid`` rises 3 cycles after the handshake; a counter
#: read can take the flush engine's sum from 2 cycles after it on.
_COMPACT_READ_LATENCY = 3
_COMPACT_SAMPLE_DELAY_MIN = 2

# Word kinds carried from read stage 1 to stage 2.
_UNMAPPED, _PLAIN, _LO, _HI = range(4)


#: Counters per first-step group of the two-step counter read mux.
_GROUP = 4


def _chunks(items, n):
    items = list(items)
    return [items[i:i + n] for i in range(0, len(items), n)]


def _or_all(values, width):
    """The OR of ``values`` (0 if there are none)."""
    if not values:
        return Const(0, width)
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def _one_hot_or(sels, values, width):
    """``values[k]`` where ``sels[k]`` is the one set select (0 if none): an AND-OR tree."""
    return _or_all([Mux(sel, val, 0) for sel, val in zip(sels, values)], width)


def _sanitize(event) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", event.label)


class _Port:
    """The signals of one port of :func:`_ram`, named like an Amaranth memory port's."""

    def __init__(self, addr, data, en):
        self.addr, self.data, self.en = addr, data, en


def _ram(m, name, width, rows, platform, *, granularity=None):
    """A block RAM holding ``rows`` (a power of two of them) at start: ``(read, write)`` ports.

    ``read``: ``addr``, ``en`` (1 unless driven), ``data`` from the next cycle on (held while
    ``en`` is low). ``write``: ``addr``, ``data``, ``en`` (one bit per ``granularity`` bits, or
    one bit). On iCE40 (:func:`hdl.lib.ram.is_ice40`) these are SB_RAM40_4K instances in 256 x 16
    mode, whose read of the row written in the same cycle is undefined: callers never use such
    a read (in simulation it returns the old word). For an Amaranth memory Yosys would emulate
    the old-word promise in logic instead, about 100 logic cells for a 32-bit word (see
    :mod:`hdl.lib.ram`). Elsewhere, or when the RAM does not fit that mode, an Amaranth memory.
    """
    depth = len(rows)
    abits = (depth - 1).bit_length()
    read = _Port(Signal(abits, name=f"{name}_raddr"), Signal(width, name=f"{name}_rdata"),
                 Signal(init=1, name=f"{name}_ren"))
    write = _Port(Signal(abits, name=f"{name}_waddr"), Signal(width, name=f"{name}_wdata"),
                  Signal(width // granularity if granularity else 1, name=f"{name}_wen"))
    if is_ice40(platform) and depth <= 256 and width % 16 == 0 and granularity in (None, 8):
        for col in range(width // 16):
            if granularity:
                lanes = write.en[2 * col:2 * col + 2]
                mask, wclke = ~Cat(lanes[0].replicate(8), lanes[1].replicate(8)), lanes.any()
            else:
                mask, wclke = Const(0, 16), write.en
            # INIT_k holds rows 16k .. 16k + 15, row 16k + i in bits 16i .. 16i + 15.
            init = {f"p_INIT_{k:X}": Const(sum(((rows[16 * k + i] >> 16 * col) & 0xFFFF) << 16 * i
                                               for i in range(16) if 16 * k + i < depth), 256)
                    for k in range(16)}
            rdata = Signal(16, name=f"{name}_rdata_{col}")
            m.d.comb += read.data[16 * col:16 * col + 16].eq(rdata)
            m.submodules[f"{name}_{col}"] = Instance(
                "SB_RAM40_4K", p_READ_MODE=0, p_WRITE_MODE=0, **init,
                i_RCLK=ClockSignal("sync"), i_RCLKE=read.en, i_RE=Const(1),
                i_RADDR=Cat(read.addr, Const(0, 11 - abits)),
                i_WCLK=ClockSignal("sync"), i_WCLKE=wclke, i_WE=Const(1),
                i_WADDR=Cat(write.addr, Const(0, 11 - abits)),
                i_MASK=mask, i_WDATA=write.data[16 * col:16 * col + 16], o_RDATA=rdata)
    else:
        m.submodules[name] = mem = Memory(shape=unsigned(width), depth=depth, init=rows)
        wr = mem.write_port(granularity=granularity)
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(read.addr), rd.en.eq(read.en), read.data.eq(rd.data),
                     wr.addr.eq(write.addr), wr.data.eq(write.data), wr.en.eq(write.en)]
    return read, write


class CsrSlave(wiring.Component):
    """AXI4-Lite register slave with the NIC's self-describing block chain and 64-bit counters.

    The decoder is generated from ``regmap``: header words and CONST registers read as constants,
    RW registers are byte-writable storage reset to the block's values, COUNTER64 registers are
    64-bit wrapping counters incremented through :meth:`count`.

    Parameters
    ----------
    regmap:
        The register map (:func:`hdl.mgmt.regs.build_register_map`).
    counter_init:
        Optional ``{event key: value}`` reset values for counters. For tests only (e.g. start a
        counter just below ``2**32`` to check the carry); real builds leave every counter at 0.
    counter_store:
        Where counter values live. ``"registers"`` (default): one flip-flop register and adder
        per counter, fixed read latency; the netlist tuned for ECP5 timing. ``"bram"``: one block
        RAM for all counters, small per-event accumulators and a flush engine; a fraction of the
        logic, for small FPGAs (iCE40), with a bounded variable read latency for counters (see
        Notes).
    compact:
        The bus logic. ``False``: pipelined, every select and write enable a register, for
        ECP5 timing. ``True`` (``counter_store="bram"`` only): the compact bus logic for small,
        slow FPGAs, one cycle of decode and RW reads from a block-RAM copy (see Notes). ``None``
        (default): compact exactly with ``counter_store="bram"``.

    Attributes
    ----------
    s_axil: In(AXILiteSignature(regmap.address_width))
        The register bus. Decodes word addresses (``addr[1:0]`` ignored). One read and one write
        in flight; ``arready``/``awready``/``wready`` are registers, never functions of ``*valid``.
    counter_store: str
        ``"registers"`` or ``"bram"``.
    compact: bool
        The compact bus logic is used.
    read_latency: int
        Cycles from an AR handshake to ``rvalid`` for a read of anything but a counter:
        :data:`READ_LATENCY` = 6 with the pipelined bus logic, 3 with the compact one (where an
        RW read can take longer: see Notes). Counter reads take this long at the least.
    read_latency_max: int
        Most cycles from an AR handshake to ``rvalid``: :data:`READ_LATENCY` in the register
        store; ``flush_period + 5`` for counter reads in the bram store with the pipelined bus
        logic; with the compact one ``flush_period + 2`` for counter reads, or ``2**bits + 4``
        for an RW read right after a reset if that is more (see Notes).
    count_latency: int
        An amount driven on ``count(key)`` in cycle N is in every counter value sampled in cycle
        N + ``count_latency`` or later (:data:`COUNT_LATENCY` = 3 in the register store, 2 in the
        bram store); the sample cycle of a read is :meth:`sample_cycle`.
    flush_period: int or None
        bram store: cycles between two flushes of the same counter (number of counters + 1);
        None for the register store.

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
    * **LO/HI coherence**: reading a counter's LO word returns bits 31:0 and latches bits 63:32
      of the same sample into the single shared latch, remembering which counter it belongs to.
      Reading a HI word returns the latch if the most recent LO read (of any counter) was this
      counter's LO, otherwise the *live* high word sampled at that read. Other reads and writes
      in between do not disturb the latch; reading HI does not clear it. With 32-bit counters
      (``regmap.counter_width`` 32) every HI word reads 0.

    **bram counter store** (``counter_store="bram"``). Why: the register store spends a
    ``counter_width``-bit register and adder per counter, a registered 16-bit increment per
    counter and a 64-bit counter read mux; on the iCE40UP5K (28 counters) that is about half of
    the CSR's LUTs and flip-flops. How:

    * The counter values live in one :class:`~amaranth.lib.memory.Memory` (``counter_width``
      wide, one read and one write port; Yosys maps it to block RAM: 2 SB_RAM40_4K for 32-bit
      counters on iCE40). Counter ``k`` is entry ``k`` of ``regmap.counter_events()``.
    * Each event has a *pending* accumulator in flip-flops; ``count(key)`` is added to it every
      cycle (not registered first) and is only as wide as the event's largest increment
      (:meth:`hdl.mgmt.regs.RegisterMap.max_increment`: 1 bit for packet/drop/parser/bridge events,
      14 for ``rx_bytes``, ``log2(W/8) + 1`` for ``tx_bytes``).
    * A flush engine walks the counters round-robin with period ``P`` = :attr:`flush_period`
      (the counters plus one idle slot). In the *read cycle* of ``k`` it reads ``bank[k]``,
      copies ``pending[k]`` into a register and restarts ``pending[k]`` from that cycle's
      increment; in the next, the *write cycle*, it writes ``bank[k] + copy``. Counter ``k`` is
      written in the cycles ``c`` with ``c % P == (k + 1) % P``, cycle 0 being the first cycle
      out of reset. No increment is lost; a write in cycle ``c`` holds every amount driven up to
      cycle ``c - 2``; a pending accumulator holds at most ``P`` cycles of increments, so it is
      ``ceil(log2(P * (2**len(count(key)) - 1) + 1))`` bits and never overflows.
    * Reset is honoured as in the register store: the memory keeps a second, never written copy
      of the reset values (``counter_init``), which the first flush sweep after reset reads
      instead of the bank.
    * A counter read (a LO word, or with 64-bit counters an HI word that does not hit the latch)
      waits in stage 2 for the write cycle of its counter and returns the value written then:
      its sample cycle is the first write cycle of the counter at least 5 cycles after the AR
      handshake (:meth:`sample_cycle`), and it holds every amount driven up to 2 cycles before
      (``count_latency`` = 2). ``rvalid`` rises the cycle after, so a counter read takes 6 to
      ``P + 5`` cycles (:attr:`read_latency_max`; 34 with the iCEBreaker's 28 counters); reads
      of other words take :data:`READ_LATENCY`. The HI latch, 32-bit HI words reading 0,
      writes and every other bus rule are as above. (That is the pipelined bus logic,
      ``compact=False``; the compact one below answers 3 cycles sooner.)

    **Compact bus logic** (``compact=True``, the default with ``counter_store="bram"``). Why: at
    the iCEBreaker's 24 MHz the pipelining above buys nothing, and on the iCE40UP5K (a logic
    cell is one LUT4 and one flip-flop) its registers, the STATUS input registers, the read mux
    over the RW registers' flip-flops and Yosys' read-during-write emulation around the counter
    RAM were about 1,000 of the CSR's 2,700 logic cells. What differs from the rules above
    (everything else holds: SLVERR, ``wstrb``, the HI latch, ``arready``, counter sampling by
    the flush engine):

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

    def __init__(self, regmap: RegisterMap, *, counter_init: dict | None = None,
                 counter_store: str = "registers", compact: bool | None = None):
        self.regmap = regmap
        self.counter_store = counter_store
        self.compact = compact = counter_store == "bram" if compact is None else compact
        if counter_store not in COUNTER_STORES:
            raise ValueError(f"counter_store must be one of {', '.join(map(repr, COUNTER_STORES))}, "
                             f"not {counter_store!r}")
        if compact not in (False, True):
            raise TypeError(f"compact must be None, False or True, not {compact!r}")
        if compact and counter_store != "bram":
            raise ValueError(f"compact=True needs counter_store='bram', not {counter_store!r}")
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

        cw = regmap.counter_width
        if counter_store == "registers":
            self._count = {k: Signal(16, name=f"count_{_sanitize(k)}") for k in self._events}
            # Reset-less: cleared by a reset copy per counter group (see elaborate).
            self._counter = {k: Signal(cw, name=f"cnt_{_sanitize(k)}", init=counter_init.get(k, 0) % 2**cw,
                                       reset_less=not compact)
                             for k in self._events}
            self.flush_period = None
            self.read_latency = self.read_latency_max = READ_LATENCY
            self.count_latency = COUNT_LATENCY
        else:
            self._count = {k: Signal(max(1, regmap.max_increment(k).bit_length()), name=f"count_{_sanitize(k)}")
                           for k in self._events}
            self._counter_init = [counter_init.get(k, 0) % 2**cw for k in self._events]
            self.flush_period = len(self._events) + 1
            self.read_latency = _COMPACT_READ_LATENCY if compact else READ_LATENCY
            self._sample_delay_min = _COMPACT_SAMPLE_DELAY_MIN if compact else _BRAM_SAMPLE_DELAY_MIN
            self.read_latency_max = self._sample_delay_min + self.flush_period
            if compact:
                # The fewest low word-address bits that tell the RW words apart (rows of the
                # shadow copy); after a reset, reads wait for the 2**bits + 1 cycle shadow sweep.
                rw_words = [b.addr(r.name) >> 2 for b in regmap.blocks for r in b.type.registers
                            if r.access is Access.RW]
                self._shadow_bits = next(n for n in range(regmap.address_width)
                                         if len({a % (1 << n) for a in rw_words}) == len(rw_words))
                self._shadow_sweep = (1 << self._shadow_bits) + 1 if rw_words else 0
                self.read_latency_max = max(self.read_latency_max, self._shadow_sweep + 3)
            self.count_latency = 2
        self._rw = {}
        for b in regmap.blocks:
            for reg in b.type.registers:
                if reg.access is Access.RW:
                    self._rw[(b.type.name, b.instance, reg.name)] = Signal(
                        32, name=f"rw_{b.type.name.lower()}{b.instance}_{reg.name.lower()}",
                        init=b.value(reg.name) & 0xFFFFFFFF, reset_less=not compact)
        self._status = {(b.type.name, b.instance, reg.name): Signal(
                            32, name=f"status_{b.type.name.lower()}{b.instance}_{reg.name.lower()}")
                        for b in regmap.blocks for reg in b.type.registers if reg.access is Access.STATUS}
        super().__init__({"s_axil": In(AXILiteSignature(regmap.address_width))})

    # -- owner-facing API ------------------------------------------------------------------

    def _unknown_key_msg(self, key) -> str:
        return f"no counter for event {key!s}; counted events: {', '.join(map(str, self._events))}"

    def __repr__(self):
        compact = "" if self.compact == (self.counter_store == "bram") else f", compact={self.compact!r}"
        return f"CsrSlave({self.regmap!r}, counter_store={self.counter_store!r}{compact})"

    def count(self, key) -> Signal:
        """The increment input of the counter for event ``key`` (0 = no event this cycle).

        ``key`` is an :class:`~hdl.mgmt.regs.Event` of the register map, made by the block that
        counts it: ``regmap.block(PORT, 0).event(PortCounter.RX_PACKETS)``.

        16 bits wide in the register store; in the bram store just wide enough for the event's
        largest increment (``regmap.max_increment(key)``: 1 bit for packet/drop/frame events).
        """
        try:
            return self._count[key]
        except (KeyError, TypeError):
            raise KeyError(self._unknown_key_msg(key)) from None

    def sample_cycle(self, key, handshake_cycle: int) -> int:
        """The cycle whose counter value a read of ``key``'s LO word returns (also an HI word read
        that does not hit the latch), for an AR handshake in ``handshake_cycle``.

        Cycles count from 0, the first cycle out of reset. The value holds every amount driven on
        ``count(key)`` up to cycle ``sample_cycle(...) - count_latency``.
        """
        try:
            k = self._events.index(key)
        except ValueError:
            raise KeyError(self._unknown_key_msg(key)) from None
        if self.counter_store == "registers":
            return handshake_cycle + READ_SAMPLE_DELAY
        first = handshake_cycle + self._sample_delay_min
        return first + (k + 1 - first) % self.flush_period

    def rw(self, block: Block, register: Register) -> Signal:
        """The current value of RW ``register`` of ``block`` (read it in the owner's logic)."""
        try:
            return self._rw[(block.type.name, block.instance, register.name)]
        except KeyError:
            raise KeyError(f"no RW register {block.type.name}#{block.instance}.{register.name}; "
                           f"RW registers: {', '.join(f'{b}#{i}.{r}' for b, i, r in self._rw)}") from None

    def status(self, block: Block, register: Register) -> Signal:
        """The input behind STATUS ``register`` of ``block``: the owner drives the live value to be read."""
        try:
            return self._status[(block.type.name, block.instance, register.name)]
        except KeyError:
            raise KeyError(f"no STATUS register {block.type.name}#{block.instance}.{register.name}; "
                           f"STATUS registers: {', '.join(f'{b}#{i}.{r}' for b, i, r in self._status)}") from None

    # -- gateware --------------------------------------------------------------------------

    def _block_words(self, block):
        """``(offset_word, name, access, word_index)`` for the words of ``block``."""
        for addr, b, name, access, w in self.regmap.words():
            if b is block:
                yield (addr - b.base) >> 2, name, access, w

    def _elaborate_bank(self, m, platform=None):
        """bram store: the counter memory, the pending accumulators and the flush engine.

        Returns ``(rp, flush_sum)``: the counter whose old value is read from the bank in this
        cycle (it is written in the next), and the value written to the bank in this cycle.
        """
        events = self._events
        n = len(events)
        cw = self.regmap.counter_width
        period = self.flush_period                        # n counters + one idle slot
        abits = (period - 1).bit_length()
        # Rows 0..n-1: the counters (row n: the idle slot's scratch row). Rows 2**abits + k: the
        # reset value of counter k, never written, read by the first sweep after reset.
        init = self._counter_init
        if self.compact:                                  # never reads the row it writes (wk != rp)
            rd, wr = _ram(m, "counter_bank", cw, init + [0] * ((1 << abits) - n) + init, platform)
        else:
            m.submodules.counter_bank = bank = Memory(
                shape=unsigned(cw), depth=2 << abits, init=init + [0] * ((1 << abits) - n) + init)
            rd = bank.read_port()                         # registered, not transparent
            wr = bank.write_port()

        # rp walks 0..n (n: the idle slot); wk is rp one cycle later. wk starts at the idle
        # slot, so the write in cycle 0 (whose read happened in reset) goes to the scratch row,
        # and counter k is written in the cycles c with c % period == (k + 1) % period.
        rp = Signal(range(period), name="flush_rp")
        wk = Signal(range(period), name="flush_wk", init=n)
        clearing = Signal(init=1, name="flush_clearing")  # the first sweep after reset
        m.d.sync += [rp.eq(Mux(rp == period - 1, 0, rp + 1)), wk.eq(rp)]
        with m.If(rp == n - 1):
            m.d.sync += clearing.eq(0)                    # the last counter's reset value read
        m.d.comb += rd.addr.eq(Cat(rp, clearing))

        # Pending accumulators. In the read cycle of k (rp == k), pending[k] is copied to
        # flush_pend and restarts from that cycle's count(k); in every other cycle it adds
        # count(k). The next cycle (the write cycle) adds flush_pend to the bank. So when copied
        # in a read cycle c of k, pending[k] holds the amounts of cycles c - period .. c - 1: at
        # most `period` of them (before the first copy after reset: cycles 0 .. k - 1, fewer),
        # each at most the largest value of count(k) (max_increment rounded up to all ones of its
        # width), so it fits in `width` bits: it never overflows, whatever the owner drives.
        # Nothing is lost: every amount is added to pending[k] or restarts it, and every value
        # pending[k] holds in a read cycle goes to the bank. A write in cycle c thus holds the
        # amounts up to cycle c - 2 (count_latency = 2).
        # The copy register keeps the pending mux and the bank's adder in separate cycles: in
        # one cycle (and with the accumulators' adders too) the UP5K reached only 26 MHz.
        sels, pendings = [], []
        for k, key in enumerate(events):
            width = (period * (2 ** len(self._count[key]) - 1)).bit_length()
            pending = Signal(width, name=f"pend_{_sanitize(key)}")
            sel = Signal(name=f"flush_sel_{_sanitize(key)}")
            m.d.comb += sel.eq(rp == k)
            m.d.sync += pending.eq(Mux(sel, self._count[key], pending + self._count[key]))
            sels.append(sel)
            pendings.append(pending)
        widest = max(len(v) for v in pendings)
        flush_pend = Signal(widest, name="flush_pend", reset_less=True)   # 0 after the idle slot
        m.d.sync += flush_pend.eq(_one_hot_or(sels, pendings, widest))
        flush_sum = Signal(cw, name="flush_sum")
        m.d.comb += [flush_sum.eq(rd.data + flush_pend),
                     wr.addr.eq(wk), wr.data.eq(flush_sum), wr.en.eq(1)]
        return rp, flush_sum

    def _elaborate_bank_read(self, m, a_addr, s1b_valid, s1b_kind, s1b_latch_match, s1b_word_addr,
                             sel_out, hi_latch, latch_valid, latch_hi_addr, flush_rp, flush_sum):
        """bram store, read stage 2: non-counter words and latched HI words answer at once; a
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

    def _elaborate_compact(self, platform):
        """The compact bus logic (``compact=True``): for small FPGAs at a few tens of MHz.

        See the class Notes. Reads decode the registered address into registers and answer in
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
            flush_rp, flush_sum = self._elaborate_bank(m, platform)

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
        """Compact path: the block-RAM copy of the RW registers that reads return.

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

    def elaborate(self, platform):
        if self.compact:
            return self._elaborate_compact(platform)
        m = Module()
        bus = self.s_axil
        rmap = self.regmap
        aw = rmap.address_width
        off_bits = (BLOCK_STRIDE - 1).bit_length()        # byte-offset bits inside a block
        word_bits = aw - 2
        bram = self.counter_store == "bram" and bool(self._events)

        # Counters and RW storage take their reset from a copy of the domain's reset per block
        # (per group of four counters), a cycle late: one reset flip-flop driving every counter
        # and RW register crossed the ULX3S die (5.1 ns, a critical path). They are reset-less
        # and cleared by the copy. An event reaches its counter through two increment registers
        # (below), and a counter's reset copy is two cycles late to match, so no event from the
        # first cycle out of reset is lost and none from the cycle reset rose leaks past it.
        local_resets = {}

        def local_reset(tag, delay=1):
            if tag not in local_resets:
                rst = ResetSignal()
                for k in range(delay):
                    copy = keep_copy(Signal(init=1), name=f"rst_{tag}" + ("" if k == delay - 1 else f"_d{k}"))
                    m.d.sync += copy.eq(rst)
                    rst = copy
                local_resets[tag] = rst
            return local_resets[tag]

        if bram:
            flush_rp, flush_sum = self._elaborate_bank(m)
        else:
            # ---- counters: the increment is registered twice, by the event's owner and by the
            # counter, so neither the owner's logic nor the way across the die shares a cycle
            # with the 64-bit carry chain (one register, placed midway, was an ECP5 critical path).
            for b in rmap.blocks:
                for g, chunk in enumerate(_chunks(b.counters, _GROUP)):
                    rst = local_reset(f"cnt_{b.type.name.lower()}{b.instance}_g{g}", delay=2)
                    for _name, key in chunk:
                        inc_far = Signal(16, name=f"inc_{_sanitize(key)}_far", reset_less=True)
                        inc_r = Signal(16, name=f"inc_{_sanitize(key)}", reset_less=True)
                        m.d.sync += [inc_far.eq(self._count[key]), inc_r.eq(inc_far)]
                        counter = self._counter[key]
                        m.d.sync += counter.eq(Mux(rst, counter.init, counter + inc_r))

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
                values = [self._counter[k] for _, k in chunk]
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

"""The management-plane register slaves' shared contract: :class:`Csr`.

Two bus front ends implement it, each a class of its own (as Amaranth's FIFOs are):
:class:`hdl.mgmt.csr.CsrSlave`, pipelined for large FPGAs (ECP5), and
:class:`hdl.mgmt.csr_compact.CompactCsrSlave`, the compact bus logic for small ones (iCE40). The
counter values live in a counter store (:mod:`hdl.mgmt.counters`): flip-flop registers or a
block-RAM bank with a flush engine. Owners see the same API whichever is built: ``count``,
``rw``, ``status`` and the latency figures. A target profile (:mod:`hdl.profile`) picks the class.

Nothing here knows an address: every word, constant, reset value and counter comes from the
:class:`~hdl.mgmt.regs.RegisterMap`, so the gateware, the host driver and the golden model cannot drift.
"""

from __future__ import annotations

import re

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hdl.lib.ram import is_ice40
from hdl.lib.stream import AXILiteSignature
from hdl.mgmt.regs import BLOCK_STRIDE, Access, Block, Register, RegisterMap

__all__ = ["Csr", "READ_LATENCY", "READ_SAMPLE_DELAY", "COUNT_LATENCY"]

# The three constants below are the figures of CsrSlave with the register store; each CSR
# instance carries the figures of its own store and bus logic as attributes (``read_latency``,
# ``read_latency_max``, ``count_latency``, :meth:`Csr.sample_cycle`).

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


class Csr(wiring.Component):
    """AXI4-Lite register slave with the NIC's self-describing block chain and 64-bit counters:
    the contract every CSR implementation keeps (not built itself: build a subclass).

    The decoder is generated from ``regmap``: header words and CONST registers read as constants,
    RW registers are byte-writable storage reset to the block's values, COUNTER64 registers are
    64-bit wrapping counters incremented through :meth:`count`, STATUS registers read what the
    owner drives on :meth:`status`.

    Parameters
    ----------
    regmap:
        The register map (:func:`hdl.top.build_register_map`).
    counter_init:
        Optional ``{event key: value}`` reset values for counters. For tests only (e.g. start a
        counter just below ``2**32`` to check the carry); real builds leave every counter at 0.

    Attributes
    ----------
    s_axil: In(AXILiteSignature(regmap.address_width))
        The register bus. Decodes word addresses (``addr[1:0]`` ignored). One read and one write
        in flight; ``arready``/``awready``/``wready`` are registers, never functions of ``*valid``.
    counter_store: RegisterCounterStore or BramCounterBank
        Where the counter values live (:mod:`hdl.mgmt.counters`).
    read_latency: int
        Cycles from an AR handshake to ``rvalid`` for a read of anything but a counter (an RW
        read of the compact bus logic can take longer). Counter reads take this long at the least.
    read_latency_max: int
        Most cycles from an AR handshake to ``rvalid``, for any read.
    count_latency: int
        An amount driven on ``count(key)`` in cycle N is in every counter value sampled in cycle
        N + ``count_latency`` or later; the sample cycle of a read is :meth:`sample_cycle`.
    flush_period: int or None
        Block-RAM counter bank: cycles between two flushes of the same counter (number of
        counters + 1); None for the register store.

    Notes
    -----
    Bus rules every implementation keeps (what the golden model mirrors); the subclasses
    document their latencies and timing:

    * ``arready`` is low from the AR handshake until the cycle after the R handshake; ``rvalid``
      holds until ``rready``. Unmapped reads: ``rresp`` = SLVERR, ``rdata`` = 0.
    * AW and W are buffered independently (either order or together); ``bvalid`` holds until
      ``bready``. RW registers honour ``wstrb``; any other address (CONST, counter, unmapped)
      answers SLVERR and changes nothing. A read whose AR comes with or after B sees the write.
    * Counters wrap at ``regmap.counter_width`` bits; increments are never lost to reads.
    * **LO/HI coherence**: reading a counter's LO word returns bits 31:0 and latches bits 63:32
      of the same sample into the single shared latch, remembering which counter it belongs to.
      Reading a HI word returns the latch if the most recent LO read (of any counter) was this
      counter's LO, otherwise the *live* high word sampled at that read. Other reads and writes
      in between do not disturb the latch; reading HI does not clear it. With 32-bit counters
      (``regmap.counter_width`` 32) every HI word reads 0.
    """

    #: Set by each implementation: cycles from an AR handshake to the earliest cycle a counter
    #: read can sample (the store's :meth:`sample_cycle` picks the actual one from there).
    _sample_delay_min: int

    def __init__(self, regmap: RegisterMap, counter_store, *, counter_init: dict | None = None,
                 storage_reset_less: bool):
        # counter_store: the store class, built here; storage_reset_less: RW registers without
        # the domain's reset (the pipelined CSR clears them from local reset copies instead).
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
        self.counter_store = counter_store(regmap, counter_init)
        self.flush_period = self.counter_store.flush_period
        self.count_latency = self.counter_store.count_latency
        self._rw = {}
        for b in regmap.blocks:
            for reg in b.type.registers:
                if reg.access is Access.RW:
                    self._rw[(b.type.name, b.instance, reg.name)] = Signal(
                        32, name=f"rw_{b.type.name.lower()}{b.instance}_{reg.name.lower()}",
                        init=b.value(reg.name) & 0xFFFFFFFF, reset_less=storage_reset_less)
        self._status = {(b.type.name, b.instance, reg.name): Signal(
                            32, name=f"status_{b.type.name.lower()}{b.instance}_{reg.name.lower()}")
                        for b in regmap.blocks for reg in b.type.registers if reg.access is Access.STATUS}
        super().__init__({"s_axil": In(AXILiteSignature(regmap.address_width))})

    # -- owner-facing API ------------------------------------------------------------------

    def _unknown_key_msg(self, key) -> str:
        return f"no counter for event {key!s}; counted events: {', '.join(map(str, self._events))}"

    def count(self, key) -> Signal:
        """The increment input of the counter for event ``key`` (0 = no event this cycle).

        ``key`` is an :class:`~hdl.mgmt.regs.Event` of the register map, made by the block that
        counts it: ``regmap.block(PORT, 0).event(PortCounter.RX_PACKETS)``.

        16 bits wide in the register store; in the block-RAM bank just wide enough for the
        event's largest increment (``regmap.max_increment(key)``: 1 bit for packet/drop/frame events).
        """
        try:
            return self.counter_store.count[key]
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
        return self.counter_store.sample_cycle(k, handshake_cycle + self._sample_delay_min)

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

    # -- shared by the implementations -------------------------------------------------------

    def _block_words(self, block):
        """``(offset_word, name, access, word_index)`` for the words of ``block``."""
        for addr, b, name, access, w in self.regmap.words():
            if b is block:
                yield (addr - b.base) >> 2, name, access, w

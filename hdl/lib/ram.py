"""Block RAM with a registered output, and first-word-fall-through FIFOs built on block RAM.

ECP5 block RAM read data arrives 5.8 ns after the clock unless the RAM's own output register
(``REGMODE = "OUTREG"``) is used, which leaves no room for logic at 156.25 MHz (6.4 ns). Yosys
does not infer that register, so for ECP5 targets :class:`PipelinedRam` instantiates DP16KD
primitives directly; everywhere else (simulation, other FPGAs) it is an Amaranth memory plus one
register. Both have a read latency of exactly two cycles, so simulation matches the board.

For area (the AREA target profile, :mod:`hdl.profile`; iCE40) there is :class:`SyncRam`, a plain one-cycle block RAM
whose read data register is the RAM's own, and :class:`RamFifo` on it. Yosys maps an Amaranth
``Memory`` to iCE40 SB_RAM40_4K, but Amaranth's synchronous read port promises the old word on a
read of the address being written in the same cycle, which SB_RAM40_4K does not define, so Yosys
adds read-first emulation in logic (the write delayed a cycle and a bypass: about 160 flip-flops
and 85 LUTs for a 73-bit word). Amaranth 0.5 cannot say "don't care" (Yosys' ``no_rw_check``
attribute only acts on ports that ``memory_dff`` builds from an asynchronous port and a register,
and such a register's reset value then costs a LUT per bit), so on iCE40 :class:`SyncRam`
instantiates SB_RAM40_4K itself. Its users never read an address in the cycle it is written.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.lib.timing import keep_copy

__all__ = ["PipelinedRam", "WideRam", "BeatFifo", "CompactBeatFifo", "OutputQueue", "SyncRam", "RamFifo", "ECP5_TARGET",
           "ICE40_TARGET", "is_ecp5", "is_ice40"]

#: Pass as ``platform`` to elaborate for ECP5 out-of-context synthesis without a board.
ECP5_TARGET = "ecp5"
#: Pass as ``platform`` to elaborate for iCE40 (SB_RAM40_4K instances) without a board.
ICE40_TARGET = "ice40"

# DP16KD aspect ratios (data width, address bits). Ref: Lattice TN1264, ECP5 Memory Usage Guide.
_DP16KD_MODES = ((18, 10), (9, 11), (4, 12), (2, 13), (1, 14))


def is_ecp5(platform) -> bool:
    """True when elaborating for an ECP5 device (a board platform or the OOC marker)."""
    if platform == ECP5_TARGET:
        return True
    try:
        from amaranth.vendor import LatticeECP5Platform
    except ImportError:  # pragma: no cover
        return False
    return isinstance(platform, LatticeECP5Platform)


def is_ice40(platform) -> bool:
    """True when elaborating for an iCE40 device (a board platform or :data:`ICE40_TARGET`)."""
    if platform == ICE40_TARGET:
        return True
    try:
        from amaranth.vendor import SiliconBluePlatform
    except ImportError:  # pragma: no cover
        return False
    return isinstance(platform, SiliconBluePlatform)


class PipelinedRam(wiring.Component):
    """Simple dual-port RAM, one write port and one read port, read latency two cycles.

    Parameters
    ----------
    width, depth:
        Word width in bits and number of words.

    Members
    -------
    w_addr, w_data, w_en: In
        Write ``w_data`` at ``w_addr`` when ``w_en``.
    r_addr, r_en: In
        Read ``r_addr`` when ``r_en``; ``r_data`` holds the word two cycles later.
    r_data: Out(width)
    """

    def __init__(self, width: int, depth: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"RAM depth must be a power of two of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        abits = (depth - 1).bit_length()
        super().__init__({
            "w_addr": In(abits), "w_data": In(width), "w_en": In(1),
            "r_addr": In(abits), "r_en": In(1), "r_data": Out(width),
        })

    def elaborate(self, platform):
        if is_ecp5(platform) and self.depth >= 512:
            return self._elaborate_dp16kd()
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                     rd.addr.eq(self.r_addr), rd.en.eq(self.r_en)]
        # Second stage: where the block RAM's output register sits on ECP5.
        # Updated only when the read stage had a read one cycle earlier, like OUTREG with OCE.
        r_en_1 = Signal()
        m.d.sync += r_en_1.eq(self.r_en)
        with m.If(r_en_1):
            m.d.sync += self.r_data.eq(rd.data)
        return m

    def _elaborate_dp16kd(self):
        m = Module()
        abits = (self.depth - 1).bit_length()
        dw, aw = next((dw, aw) for dw, aw in _DP16KD_MODES if aw >= abits)
        r_en_1 = Signal()
        m.d.sync += r_en_1.eq(self.r_en)
        for col in range(-(-self.width // dw)):
            lo = col * dw
            bits = min(dw, self.width - lo)
            din = Cat(self.w_data[lo:lo + bits], Const(0, dw - bits))
            dout = Signal(dw, name=f"dout_{col}")
            m.d.comb += self.r_data[lo:lo + bits].eq(dout[:bits])
            shift = 14 - aw  # the low address pins select bytes (x18) or are unused
            pad = Const(0, aw - abits)
            wa = Cat(Const(0b11 if dw == 18 else 0, shift), self.w_addr, pad)
            ra = Cat(Const(0, shift), self.r_addr, pad)
            params = {
                "p_DATA_WIDTH_A": dw, "p_DATA_WIDTH_B": dw,
                "p_REGMODE_A": "NOREG", "p_REGMODE_B": "OUTREG",
                "p_RESETMODE": "SYNC", "p_ASYNC_RESET_RELEASE": "SYNC",
                "p_CSDECODE_A": "0b000", "p_CSDECODE_B": "0b000",
                "p_WRITEMODE_A": "NORMAL", "p_WRITEMODE_B": "NORMAL", "p_GSR": "DISABLED",
            }
            ports = {
                "i_CLKA": ClockSignal("sync"), "i_CEA": Const(1), "i_OCEA": Const(1), "i_RSTA": Const(0),
                "i_WEA": self.w_en, "i_CSA0": Const(0), "i_CSA1": Const(0), "i_CSA2": Const(0),
                "i_CLKB": ClockSignal("sync"), "i_CEB": self.r_en, "i_OCEB": r_en_1, "i_RSTB": Const(0),
                "i_WEB": Const(0), "i_CSB0": Const(0), "i_CSB1": Const(0), "i_CSB2": Const(0),
            }
            for i in range(14):
                ports[f"i_ADA{i}"] = wa[i]
                ports[f"i_ADB{i}"] = ra[i]
            for i in range(18):
                ports[f"i_DIA{i}"] = din[i] if i < dw else Const(0)
                ports[f"i_DIB{i}"] = Const(0)
                if i < dw:
                    ports[f"o_DOB{i}"] = dout[i]
            m.submodules[f"bram_{col}"] = Instance("DP16KD", **params, **ports)
        return m


class WideRam(wiring.Component):
    """512 x 36 simple dual-port RAM, read latency two cycles (the ECP5 RAM's output register),
    reading in every cycle.

    On ECP5 a DP16KD in 36-bit pseudo dual-port mode with ``REGMODE_B = OUTREG`` (wired as Yosys'
    own PDPW16KD mapping, share/lattice/brams_map_16kd.v; the read data leaves on DOA and DOB, so
    both ports get the output register); elsewhere an Amaranth memory plus a
    register, so simulation has the board's latency. For tables of at most 512 words: there the
    36-bit mode takes half the DP16KDs of :class:`PipelinedRam`'s 1024 x 18 (the ACL classifier's
    chunk RAMs, the flow table's ways at 512 sets).
    """

    WIDTH, DEPTH = 36, 512

    def __init__(self):
        super().__init__({"w_addr": In(9), "w_data": In(self.WIDTH), "w_en": In(1),
                          "r_addr": In(9), "r_data": Out(self.WIDTH)})

    def elaborate(self, platform):
        m = Module()
        if not is_ecp5(platform):
            m.submodules.mem = mem = Memory(shape=self.WIDTH, depth=self.DEPTH, init=[])
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                         rd.addr.eq(self.r_addr)]
            m.d.sync += self.r_data.eq(rd.data)
            return m
        ports = {"i_CLKA": ClockSignal("sync"), "i_WEA": Const(1), "i_CEA": self.w_en, "i_OCEA": Const(1),
                 "i_RSTA": Const(0), "i_CLKB": ClockSignal("sync"), "i_WEB": Const(0), "i_CEB": Const(1),
                 "i_OCEB": Const(1), "i_RSTB": Const(0)}
        for i in range(3):
            ports[f"i_CSA{i}"] = ports[f"i_CSB{i}"] = Const(0)
        for i in range(14):
            # 36-bit mode: ADA3..0 are the byte enables, ADx13..5 the row.
            ports[f"i_ADA{i}"] = Const(1) if i < 4 else (self.w_addr[i - 5] if i >= 5 else Const(0))
            ports[f"i_ADB{i}"] = self.r_addr[i - 5] if i >= 5 else Const(0)
        for i in range(18):
            ports[f"i_DIA{i}"] = self.w_data[i]
            ports[f"i_DIB{i}"] = self.w_data[18 + i]
            ports[f"o_DOA{i}"] = self.r_data[i]
            ports[f"o_DOB{i}"] = self.r_data[18 + i]
        m.submodules.bram = Instance(
            "DP16KD", p_DATA_WIDTH_A=36, p_DATA_WIDTH_B=36, p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
            p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED", **ports)
        return m


# SB_RAM40_4K aspect ratios: (READ_MODE/WRITE_MODE, address bits, RDATA/WDATA pins that carry data).
# Ref: Lattice TN1250, Memory Usage Guide for iCE40 Devices; the pins as Yosys' share/ice40/cells_sim.v
# models them (the narrow modes use every 2nd, 4th or 8th pin).
_SB_RAM40_MODES = ((0, 8, tuple(range(16))), (1, 9, tuple(range(0, 16, 2))), (2, 10, (1, 5, 9, 13)),
                   (3, 11, (3, 11)))


class SyncRam(wiring.Component):
    """Simple dual-port RAM, one write port and one read port, read latency one cycle.

    ``r_data`` is the RAM's own read register: it holds the word read at the last ``r_en`` for
    as long as ``r_en`` stays low, at no cost in logic. A read of the address that is written in
    the same cycle returns an undefined word on iCE40 (the old one in simulation): users must not
    do it. On iCE40 (see :func:`is_ice40`) this is SB_RAM40_4K instances in the aspect ratio that
    needs the fewest of them; elsewhere an Amaranth memory.

    Parameters
    ----------
    width, depth:
        Word width in bits and number of words (a power of two; at most 2048 on iCE40).

    Members
    -------
    w_addr, w_data, w_en: In
        Write ``w_data`` at ``w_addr`` when ``w_en``.
    r_addr, r_en: In
        Read ``r_addr`` when ``r_en``; ``r_data`` holds the word from the next cycle on.
    r_data: Out(width)
    """

    def __init__(self, width: int, depth: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"RAM depth must be a power of two of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        abits = (depth - 1).bit_length()
        super().__init__({
            "w_addr": In(abits), "w_data": In(width), "w_en": In(1),
            "r_addr": In(abits), "r_en": In(1), "r_data": Out(width),
        })

    def __repr__(self):
        return f"SyncRam(width={self.width}, depth={self.depth})"

    @staticmethod
    def sb_ram40_count(width: int, depth: int) -> int:
        """SB_RAM40_4K blocks a ``width`` x ``depth`` :class:`SyncRam` takes on iCE40."""
        abits = (depth - 1).bit_length()
        return min(-(-width // len(pins)) for _, aw, pins in _SB_RAM40_MODES if aw >= abits)

    def elaborate(self, platform):
        if is_ice40(platform):
            if self.depth > 2048:
                raise ValueError(f"SyncRam on iCE40 is at most 2048 words deep, not {self.depth!r}")
            return self._elaborate_sb_ram40()
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                     rd.addr.eq(self.r_addr), rd.en.eq(self.r_en), self.r_data.eq(rd.data)]
        return m

    def _elaborate_sb_ram40(self):
        m = Module()
        abits = (self.depth - 1).bit_length()
        count = self.sb_ram40_count(self.width, self.depth)
        mode, _, pins = next(x for x in _SB_RAM40_MODES if x[1] >= abits and -(-self.width // len(x[2])) == count)
        waddr = Cat(self.w_addr, Const(0, 11 - abits))
        raddr = Cat(self.r_addr, Const(0, 11 - abits))
        for col in range(count):
            lo = col * len(pins)
            bits = min(len(pins), self.width - lo)
            wdata = [Const(0)] * 16
            for k in range(bits):
                wdata[pins[k]] = self.w_data[lo + k]
            rdata = Signal(16, name=f"rdata_{col}")
            m.d.comb += [self.r_data[lo + k].eq(rdata[pins[k]]) for k in range(bits)]
            m.submodules[f"bram_{col}"] = Instance(
                "SB_RAM40_4K", p_READ_MODE=mode, p_WRITE_MODE=mode,
                i_RCLK=ClockSignal("sync"), i_RCLKE=self.r_en, i_RE=Const(1), i_RADDR=raddr,
                i_WCLK=ClockSignal("sync"), i_WCLKE=self.w_en, i_WE=Const(1), i_WADDR=waddr,
                i_MASK=Const(0, 16), i_WDATA=Cat(*wdata), o_RDATA=rdata)
        return m


class _SmallFifo(wiring.Component):
    """Members, depth check and repr shared by :class:`RamFifo` and :class:`OutputQueue` (those of
    ``amaranth.lib.fifo.SyncFIFO``); ``MIN_DEPTH`` is the smallest depth the subclass builds."""

    MIN_DEPTH = 2

    def __init__(self, width: int, depth: int):
        if not isinstance(depth, int) or depth < self.MIN_DEPTH:
            raise ValueError(f"{type(self).__name__} depth must be an integer of at least {self.MIN_DEPTH}, "
                             f"not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    def __repr__(self):
        return f"{type(self).__name__}(width={self.width}, depth={self.depth})"


class RamFifo(_SmallFifo):
    """First-word-fall-through FIFO in block RAM (:class:`SyncRam`), for area rather than speed.

    Same ports and behaviour as ``amaranth.lib.fifo.SyncFIFO`` (a write while full is ignored;
    ``level`` counts every stored word), but no word is ever held in flip-flops: ``r_data`` is
    the RAM's own read register, loaded one cycle ahead while the word before it is consumed,
    so one word per cycle goes through. A word written into an empty FIFO in cycle t is
    readable in t + 2, one cycle later than ``SyncFIFO``.

    The RAM is never read at the address being written: the read address is the oldest word
    still in the RAM and is only read when the RAM holds a word (so it differs from the write
    address), and the RAM is never written while it is full (``level`` includes the word in the
    read register, so the RAM holds at most ``depth`` words).

    Parameters
    ----------
    width, depth:
        Word width and capacity in words (at least 2); the RAM has the next power of two.

    Members
    -------
    w_data, w_en: In; w_rdy: Out
    r_data, r_rdy: Out; r_en: In
    level: Out(range(depth + 1))
    """

    def elaborate(self, platform):
        m = Module()
        abits = (self.depth - 1).bit_length()
        m.submodules.ram = ram = SyncRam(self.width, 1 << abits)
        w_ptr = Signal(abits)                 # both wrap at the RAM size
        r_ptr = Signal(abits)                 # oldest word still in the RAM
        out_valid = Signal()                  # the read register holds the head word

        do_write = self.w_en & self.w_rdy
        do_read = self.r_en & out_valid
        # The RAM holds level - out_valid words; fetch the next one whenever the read register
        # is empty or being read.
        fetch = (self.level != out_valid) & (~out_valid | self.r_en)
        m.d.comb += [
            self.w_rdy.eq(self.level != self.depth),
            ram.w_addr.eq(w_ptr), ram.w_data.eq(self.w_data), ram.w_en.eq(do_write),
            ram.r_addr.eq(r_ptr), ram.r_en.eq(fetch),
            self.r_data.eq(ram.r_data), self.r_rdy.eq(out_valid),
        ]
        with m.If(do_write):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        with m.If(fetch):
            m.d.sync += r_ptr.eq(r_ptr + 1)
        m.d.sync += [out_valid.eq(fetch | (out_valid & ~self.r_en)),
                     self.level.eq(self.level + do_write - do_read)]
        return m


class OutputQueue(_SmallFifo):
    """Small first-word-fall-through FIFO whose stored words never wait on the reader.

    Same members and behaviour as ``amaranth.lib.fifo.SyncFIFOBuffered`` (a word written into an
    empty queue in cycle t is readable in t + 2; a write while full is ignored; ``level`` counts
    every stored word; ``r_data`` and ``r_rdy`` come from flip-flops), but ``r_en`` reaches only
    a few control flip-flops. The head word alternates between two output slots and ``r_data``
    is the slot that a select register points at. A slot that has been read reloads from the
    body (``depth - 2`` words of distributed RAM) in the next cycle, enabled by its own empty
    flag, while the reader takes the other slot, so one word per cycle goes through.

    Why: in ``SyncFIFOBuffered`` the reader's ``r_en`` enables every bit of the output register.
    Behind the packet buffer's egress decision, routing that enable to a wide register spread
    over the die was the NIC's ECP5 critical path.

    Parameters
    ----------
    width, depth:
        Word width and capacity in words (at least 3).

    Members
    -------
    w_data, w_en: In; w_rdy: Out
    r_data, r_rdy: Out; r_en: In
    level: Out(range(depth + 1))
    """

    MIN_DEPTH = 3

    def elaborate(self, platform):
        m = Module()
        body_depth = self.depth - 2
        m.submodules.body = body = Memory(shape=self.width, depth=body_depth, init=[])
        wr = body.write_port()
        rd = body.read_port(domain="comb")
        w_ptr = Signal(range(body_depth))
        r_ptr = Signal(range(body_depth))
        body_level = Signal(range(body_depth + 1))
        slots = [Signal(self.width, name=f"slot{i}", reset_less=True) for i in range(2)]
        slot_full = Signal(2)
        head = Signal()                    # slot holding the oldest word
        fill = Signal()                    # slot the body's next word goes into

        def advance(ptr):
            return Mux(ptr == body_depth - 1, 0, ptr + 1)

        do_write = self.w_en & self.w_rdy
        do_read = self.r_en & self.r_rdy
        # Only registers decide a reload: the reader's r_en is not on this path.
        load = (body_level != 0) & ~slot_full.bit_select(fill, 1)
        m.d.comb += [
            self.w_rdy.eq(self.level != self.depth),
            wr.addr.eq(w_ptr), wr.data.eq(self.w_data), wr.en.eq(do_write),
            rd.addr.eq(r_ptr),
            self.r_data.eq(Mux(head, slots[1], slots[0])),
            self.r_rdy.eq(slot_full.bit_select(head, 1)),
        ]
        with m.If(do_write):
            m.d.sync += w_ptr.eq(advance(w_ptr))
        with m.If(load):
            m.d.sync += [r_ptr.eq(advance(r_ptr)), fill.eq(~fill)]
            for i, slot in enumerate(slots):
                with m.If(fill == i):
                    m.d.sync += slot.eq(rd.data)
        with m.If(do_read):
            m.d.sync += head.eq(~head)
        for i in range(2):
            filled = load & (fill == i)
            emptied = do_read & (head == i)
            m.d.sync += slot_full[i].eq(filled | (slot_full[i] & ~emptied))
        m.d.sync += [body_level.eq(body_level + do_write - load),
                     self.level.eq(self.level + do_write - do_read)]
        return m


class _BeatFifoInterface(wiring.Component):
    """The interface of the beat FIFOs (:class:`BeatFifo`, :class:`CompactBeatFifo`).

    First-word-fall-through, one write and one read per cycle. Same port names as
    ``amaranth.lib.fifo.SyncFIFOBuffered``, but ``w_rdy`` is a registered look-ahead: high in
    cycle t, a write may come in t .. t + slack - 1 (``slack`` >= 2; a writer with more register
    stages between its decision and the write asks for more). A write against that rule
    overflows the FIFO. The implementations differ only in how soon a written word can be read.

    Members
    -------
    w_data, w_en: In; w_rdy: Out
    r_data, r_rdy: Out; r_en: In
    """

    def __init__(self, width: int, depth: int, *, slack: int = 2):
        if slack < 2:
            raise ValueError(f"{type(self).__name__} slack must be at least 2, not {slack!r}")
        self.width, self.depth, self.slack = width, depth, slack
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
        })

    def __repr__(self):
        return f"{type(self).__name__}(width={self.width}, depth={self.depth}, slack={self.slack})"


class BeatFifo(_BeatFifoInterface):
    """The beat FIFO for speed: a :class:`PipelinedRam` and a flip-flop output queue.

    Reads are issued ahead into a small output queue so that the two-cycle RAM latency
    never stalls a steady stream; every control path into the RAM starts at a register. A word
    written in cycle t is readable in t + 5. Interface: :class:`_BeatFifoInterface`.
    """

    QUEUE = 5

    def elaborate(self, platform):
        m = Module()
        abits = (self.depth - 1).bit_length()
        m.submodules.ram = ram = PipelinedRam(self.width, self.depth)
        # The output queue is buffered (r_data and r_rdy are flip-flops behind a 2:1 mux; why: no
        # frame-end decision right after a distributed-RAM read). One more entry covers its latency.
        m.submodules.queue = queue = OutputQueue(width=self.width, depth=self.QUEUE)

        # Every control path into the RAM starts at a register: on ECP5 the block RAMs of a
        # wide buffer are spread over the die and routing to them costs most of a 6.4 ns cycle.
        w_ptr = Signal(abits)
        r_ptr = Signal(abits)              # next word to read out of the RAM
        unread = Signal(abits + 1)         # words written into the RAM and not read out yet
        nonempty = Signal()                # unread != 0, as a register of its own
        occupancy = Signal(range(self.depth + 1))
        w_rdy = Signal(init=1)
        in_flight = Signal(2)              # reads issued whose data has not reached the queue
        arrive = Signal(2)                 # shift register: read issued 1 and 2 cycles ago

        # `w_rdy` is a registered look-ahead with two slots of slack (see below), so a writer
        # that saw it high one cycle earlier may still write now: writes are never refused.
        do_write = self.w_en
        m.d.comb += self.w_rdy.eq(w_rdy)
        ram_w_en = Signal()                # the RAM's write strobe; `written` below copies it
        m.d.comb += ram.w_en.eq(ram_w_en)
        m.d.sync += [ram.w_addr.eq(w_ptr), ram.w_data.eq(self.w_data), ram_w_en.eq(do_write)]
        with m.If(do_write):
            m.d.sync += w_ptr.eq(w_ptr + 1)

        # Issue a read when a word in the RAM is unread and the queue has room for it,
        # counting reads still in flight. The RAM reads r_ptr every cycle; `arrive` says
        # which of those reads were real. "Unread" is a flag of its own, its next value chosen
        # by `issue` between two candidates made from registers (why: no wide pointer compare in
        # the cycle of the read).
        room = (queue.level + in_flight) < self.QUEUE
        issue = nonempty & room
        m.d.comb += [ram.r_addr.eq(r_ptr), ram.r_en.eq(1)]
        with m.If(issue):
            m.d.sync += r_ptr.eq(r_ptr + 1)
        # unread + written - issue, as a choice between the count's own increment and decrement
        # (one carry chain each, from the register alone). Why `written`, a kept copy of the RAM's
        # write strobe: the RAM's own sits by the block RAMs, across the die from this logic.
        written = keep_copy(ram_w_en, name="written", reset_less=False)
        m.d.sync += written.eq(do_write)
        with m.If(written & ~issue):
            m.d.sync += unread.eq(unread + 1)
        with m.Elif(issue & ~written):
            m.d.sync += unread.eq(unread - 1)
        any_unread = unread != 0
        nonempty_if_read = Mux(written, any_unread, unread > 1)     # unread + written - 1 != 0
        m.d.sync += nonempty.eq(Mux(issue, nonempty_if_read, any_unread | written))
        m.d.sync += arrive.eq(Cat(issue, arrive[0]))
        m.d.sync += in_flight.eq(in_flight + issue - arrive[1])

        # A slot is free once its word has been read out of the RAM. `w_rdy` looks at the
        # registered occupancy only (a short path), so it keeps `slack` slots in reserve: the
        # occupancy can grow while `w_rdy` and the writer's own pipeline catch up.
        # Reads are subtracted a cycle late (registered `issue`): a short path, and only stricter.
        issue_q = Signal()
        m.d.sync += issue_q.eq(issue)
        m.d.sync += [occupancy.eq(occupancy + do_write - issue_q), w_rdy.eq(occupancy < self.depth - self.slack)]

        m.d.comb += [queue.w_data.eq(ram.r_data), queue.w_en.eq(arrive[1])]
        m.d.comb += [self.r_data.eq(queue.r_data), self.r_rdy.eq(queue.r_rdy), queue.r_en.eq(self.r_en)]
        return m


class CompactBeatFifo(_BeatFifoInterface):
    """The beat FIFO for area: a :class:`RamFifo`, whose RAM read register is the whole output
    queue (no words in flip-flops, no write registers in front of the RAM). A word written in
    cycle t is readable in t + 2. Interface: :class:`_BeatFifoInterface`.
    """

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = RamFifo(self.width, self.depth)
        # Look-ahead: `w_rdy` in cycle t compares the level of cycle t - 1, which counts the
        # writes up to t - 2. Writes not counted there: t - 1 and t (both allowed by an earlier
        # `w_rdy`) and up to slack - 1 more after t, slack + 1 in all; the level counts a word
        # until it is read, so the FIFO then holds at most (depth - slack - 1) + slack + 1 = depth
        # words and never refuses a write. Slack 2 covers a writer one register upstream.
        w_rdy = Signal(init=1)
        m.d.sync += w_rdy.eq(fifo.level < self.depth - self.slack)
        m.d.comb += [
            self.w_rdy.eq(w_rdy),
            fifo.w_data.eq(self.w_data), fifo.w_en.eq(self.w_en),
            self.r_data.eq(fifo.r_data), self.r_rdy.eq(fifo.r_rdy), fifo.r_en.eq(self.r_en),
        ]
        return m

"""Block RAM with a registered output, and a first-word-fall-through FIFO built on it.

ECP5 block RAM read data arrives 5.8 ns after the clock unless the RAM's own output register
(``REGMODE = "OUTREG"``) is used, which leaves no room for logic at 156.25 MHz (6.4 ns). Yosys
does not infer that register, so for ECP5 targets :class:`PipelinedRam` instantiates DP16KD
primitives directly; everywhere else (simulation, other FPGAs) it is an Amaranth memory plus one
register. Both have a read latency of exactly two cycles, so simulation matches the board.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedRam", "BeatFifo", "ECP5_TARGET", "is_ecp5"]

#: Pass as ``platform`` to elaborate for ECP5 out-of-context synthesis without a board.
ECP5_TARGET = "ecp5"

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


class BeatFifo(wiring.Component):
    """First-word-fall-through FIFO on a :class:`PipelinedRam`, one write and one read per cycle.

    Reads are issued ahead into a small output queue so that the two-cycle RAM latency
    never stalls a steady stream. Same port names as ``amaranth.lib.fifo.SyncFIFOBuffered``, but
    ``w_rdy`` is a registered look-ahead: high in cycle t, a write may come in t .. t + slack - 1
    (``slack`` = 2 by default; a writer with more register stages between its decision and the
    write asks for more). A write against that rule overflows the FIFO.

    Members
    -------
    w_data, w_en: In; w_rdy: Out
    r_data, r_rdy: Out; r_en: In
    """

    QUEUE = 5

    def __init__(self, width: int, depth: int, *, slack: int = 2):
        if slack < 2:
            raise ValueError(f"BeatFifo slack must be at least 2, not {slack!r}")
        self.width, self.depth, self.slack = width, depth, slack
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        abits = (self.depth - 1).bit_length()
        m.submodules.ram = ram = PipelinedRam(self.width, self.depth)
        # The output queue is buffered (r_data and r_rdy are flip-flops): the reader's frame-end
        # decision behind a distributed-RAM read was a ULX3S critical path. One more entry
        # covers its extra cycle of latency.
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=self.width, depth=self.QUEUE)

        # Every control path into the RAM starts at a register: on ECP5 the block RAMs of a
        # wide buffer are spread over the die and routing to them costs most of a 6.4 ns cycle.
        w_ptr = Signal(abits)
        committed = Signal(abits + 1)      # words written into the RAM (one cycle after accept)
        r_ptr = Signal(abits + 1)          # next word to read out of the RAM
        occupancy = Signal(range(self.depth + 1))
        w_rdy = Signal(init=1)
        in_flight = Signal(2)              # reads issued whose data has not reached the queue
        arrive = Signal(2)                 # shift register: read issued 1 and 2 cycles ago

        # `w_rdy` is a registered look-ahead with two slots of slack (see below), so a writer
        # that saw it high one cycle earlier may still write now: writes are never refused.
        do_write = self.w_en
        m.d.comb += self.w_rdy.eq(w_rdy)
        m.d.sync += [ram.w_addr.eq(w_ptr), ram.w_data.eq(self.w_data), ram.w_en.eq(do_write)]
        with m.If(do_write):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        with m.If(ram.w_en):
            m.d.sync += committed.eq(committed + 1)

        # Issue a read when a committed word is unread and the queue has room for it,
        # counting reads still in flight. The RAM reads r_ptr every cycle; `arrive` says
        # which of those reads were real.
        room = (queue.level + in_flight) < self.QUEUE
        issue = (committed != r_ptr) & room
        m.d.comb += [ram.r_addr.eq(r_ptr[:abits]), ram.r_en.eq(1)]
        with m.If(issue):
            m.d.sync += r_ptr.eq(r_ptr + 1)
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

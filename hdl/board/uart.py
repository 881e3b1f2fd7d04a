"""8N1 UART receiver and transmitter (one start bit, eight data bits LSB first, one stop bit).

Both run from the core clock with an integer divisor ``clk_hz / baud`` (rounded); :func:`uart_divisor`
refuses divisors below :data:`MIN_DIVISOR` or whose rounding leaves a baud error above
:data:`MAX_BAUD_ERROR` (the receiver samples once per bit, so its budget is about half a bit over the
ten bits of a character, shared with the far end's clock error).

Receiver: the line goes through a two-flop synchroniser; a falling edge on the idle line starts a
character; the start bit is re-checked half a bit later (a shorter low pulse is a glitch and is
ignored), then each data bit and the stop bit are sampled one bit time apart, i.e. in the middle
of each bit. A low stop bit is a framing error: no byte is delivered, ``ferr`` pulses, and the
receiver waits for the line to return high (so a break is reported once, not every ten bits).
"""


from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["uart_divisor", "UartRx", "UartTx", "MIN_DIVISOR", "MAX_BAUD_ERROR"]

#: Smallest clock cycles per bit: the mid-bit sample needs a few cycles of margin around the
#: synchroniser's two-cycle delay.
MIN_DIVISOR = 4
#: Largest relative baud error the integer divisor may introduce.
MAX_BAUD_ERROR = 0.02


def uart_divisor(clk_hz: int, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``: ``round(clk_hz / baud)``, checked."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"clk_hz and baud must be positive, not clk_hz={clk_hz!r} baud={baud!r}")
    div = round(clk_hz / baud)
    if div < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz} Hz clock: needs at least "
                         f"{MIN_DIVISOR} clock cycles per bit, got clk_hz/baud = {clk_hz / baud:.2f}")
    err = abs(clk_hz / div - baud) / baud
    if err > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud} at {clk_hz} Hz: divisor {div} gives {clk_hz / div:.0f} baud, "
                         f"an error of {100 * err:.1f}% (more than {100 * MAX_BAUD_ERROR:.0f}%)")
    return div


class UartRx(wiring.Component):
    """UART receiver, 8N1, mid-bit sampling, framing-error detection.

    Parameters
    ----------
    divisor:
        Clock cycles per bit (:func:`uart_divisor`).

    Members
    -------
    rx: In(1)
        The line (idle high); asynchronous, synchronised inside.
    o: Out(stream.Signature(8, always_ready=True))
        One ``valid`` pulse per good character; ``payload`` is the byte.
    ferr: Out(1)
        One-cycle pulse for a character whose stop bit was low (the byte is discarded).
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8, always_ready=True))
    ferr: Out(1)

    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"divisor must be at least {MIN_DIVISOR}, not {divisor!r}")
        self.divisor = divisor
        super().__init__()

    def __repr__(self):
        return f"UartRx(divisor={self.divisor})"

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = cdc.FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)
        m.d.sync += [self.o.valid.eq(0), self.ferr.eq(0)]

        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)   # next look: middle of the start bit
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(rx):
                        m.next = "IDLE"                   # glitch shorter than half a bit
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"                   # mid stop bit: ready for an early start
                    with m.Else():
                        m.d.sync += self.ferr.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1.

    Parameters
    ----------
    divisor:
        Clock cycles per bit (:func:`uart_divisor`).

    Members
    -------
    i: In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle.
    tx: Out(1)
        The line, driven straight from a flop (idle high).
    busy: Out(1)
        A character is being sent.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"divisor must be at least {MIN_DIVISOR}, not {divisor!r}")
        self.divisor = divisor
        super().__init__()

    def __repr__(self):
        return f"UartTx(divisor={self.divisor})"

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        left = Signal(range(11))                          # bits still to send, start bit included
        shreg = Signal(9, init=0x1FF)                     # data then stop bit, shifted out LSB first

        m.d.comb += [self.busy.eq(left != 0), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, 1)), left.eq(10), timer.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(Cat(shreg[1:], 1)), left.eq(left - 1),
                             timer.eq(div - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m

"""AXI-Stream register slice: breaks the combinational valid/ready paths between blocks."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import keep_copy

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Two-entry skid buffer: registered ``tvalid``/payload out and registered ``tready`` in.

    Sustains one transfer per cycle; adds one cycle of latency.

    Parameters
    ----------
    data_width, user_width:
        Shape of the AXI-Stream passed through.

    Members
    -------
    s_axis: In(AXIStreamSignature)
    m_axis: Out(AXIStreamSignature)
    """

    def __init__(self, data_width: int, user_width: int = 1):
        self._sig = AXIStreamSignature(data_width, user_width)
        super().__init__({"s_axis": In(self._sig), "m_axis": Out(self._sig)})

    def elaborate(self, platform):
        m = Module()
        fields = ("tdata", "tkeep", "tlast", "tuser")
        # Main output register and the skid register that catches the beat accepted while
        # the output stalled (tready is registered, so one extra beat may arrive).
        skid_valid = Signal()
        skid = {f: Signal.like(getattr(self.s_axis, f), name=f"skid_{f}") for f in fields}
        # `tready` towards the sender is a kept flip-flop of its own (the complement of skid_valid;
        # why: it can sit by the sender's logic, skid_valid by this slice's muxes).
        ready = keep_copy(Signal(init=1), name="ready", reset_less=False)
        m.d.comb += self.s_axis.tready.eq(ready)
        out_free = ~self.m_axis.tvalid | self.m_axis.tready

        with m.If(out_free):
            with m.If(skid_valid):
                m.d.sync += [getattr(self.m_axis, f).eq(skid[f]) for f in fields]
                m.d.sync += [self.m_axis.tvalid.eq(1), skid_valid.eq(0), ready.eq(1)]
            with m.Else():
                m.d.sync += self.m_axis.tvalid.eq(self.s_axis.tvalid)
                m.d.sync += [getattr(self.m_axis, f).eq(getattr(self.s_axis, f)) for f in fields]
        with m.Elif(self.s_axis.tvalid & self.s_axis.tready):
            m.d.sync += [skid_valid.eq(1), ready.eq(0)]
        # The skid register takes the input whenever it is empty (`ready`), whether or not the
        # beat lands there (why: its enable is then a flip-flop, not the transfer decode).
        with m.If(ready):
            m.d.sync += [skid[f].eq(getattr(self.s_axis, f)) for f in fields]
        return m

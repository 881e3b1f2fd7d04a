"""AXI4-Lite register slice: every channel through one register, for a master and slave far apart."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXILiteSignature

__all__ = ["AXILiteSlice"]

# (valid, ready, payload members, True if the channel runs master -> slave)
_CHANNELS = (
    ("awvalid", "awready", ("awaddr", "awprot"), True),
    ("wvalid", "wready", ("wdata", "wstrb"), True),
    ("arvalid", "arready", ("araddr", "arprot"), True),
    ("bvalid", "bready", ("bresp",), False),
    ("rvalid", "rready", ("rdata", "rresp"), False),
)


class AXILiteSlice(wiring.Component):
    """One register on every AXI4-Lite channel; no combinational path from one side to the other.

    Each channel holds one transfer: ``ready`` towards the sender is "the register is empty",
    ``valid`` towards the receiver is "the register is full", both flip-flops. A channel thus
    carries at most one transfer every two cycles, which costs nothing on a register bus with
    one transaction in flight (the UART bridge) and adds two cycles to each way.

    Why: on the ULX3S the UART bridge and the CSR slave are placed far apart, and Yosys merged
    the bridge's request logic into the CSR's capture enables, making a die-crossing path with
    logic at both ends. With this slice each end only sees flip-flops from the other.

    Members
    -------
    s_axil: In(AXILiteSignature(addr_width))  -- towards the master
    m_axil: Out(AXILiteSignature(addr_width))  -- towards the slave
    """

    def __init__(self, addr_width: int):
        self.addr_width = addr_width
        super().__init__({"s_axil": In(AXILiteSignature(addr_width)),
                          "m_axil": Out(AXILiteSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        for valid, ready, payload, forward in _CHANNELS:
            src, dst = (self.s_axil, self.m_axil) if forward else (self.m_axil, self.s_axil)
            full = Signal(name=f"{valid[:-5]}_full")
            m.d.comb += [getattr(src, ready).eq(~full), getattr(dst, valid).eq(full)]
            with m.If(getattr(dst, ready) & full):
                m.d.sync += full.eq(0)
            with m.If(getattr(src, valid) & ~full):
                m.d.sync += full.eq(1)
                for name in payload:
                    m.d.sync += getattr(dst, name).eq(getattr(src, name))
        return m

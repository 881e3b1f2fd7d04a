"""Packet-granular round-robin arbiter: N ingress streams into the shared pipeline."""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .stream import AXIStreamSignature

__all__ = ["PacketArbiter"]


class PacketArbiter(wiring.Component):
    """Merge ``n_ports`` AXI-Streams, switching only between frames, round robin.

    The grant is chosen in the cycle a frame starts, so a new frame from any port can follow the
    previous frame's last beat with no idle cycle. The output ``tuser`` carries the ingress
    ``tuser`` bit 0 (bad frame) in bit 0 and the port number above it.

    Parameters
    ----------
    data_width:
        W, the datapath width.
    n_ports:
        Number of ingress ports.

    Members
    -------
    s_axis_<i>: In(AXIStreamSignature(W, 1)), one per port (``self.inputs[i]``)
    m_axis: Out(AXIStreamSignature(W, 1 + port_bits))
    """

    def __init__(self, data_width: int, n_ports: int):
        self.n_ports = n_ports
        self.port_bits = max(1, (n_ports - 1).bit_length())
        members = {f"s_axis_{i}": In(AXIStreamSignature(data_width, 1)) for i in range(n_ports)}
        members["m_axis"] = Out(AXIStreamSignature(data_width, 1 + self.port_bits))
        super().__init__(members)
        self.inputs = [getattr(self, f"s_axis_{i}") for i in range(n_ports)]

    def elaborate(self, platform):
        m = Module()
        n = self.n_ports
        locked = Signal()                      # inside a frame: grant may not move
        current = Signal(range(n))             # port being served while locked
        last_served = Signal(range(n), init=n - 1)

        # Round robin: the first valid port after the one served last.
        pick = Signal(range(n))
        pick_valid = Signal()
        with m.Switch(last_served):
            for served in range(n):
                with m.Case(served):
                    # Later assignments win, so the nearest port after `served` is written last.
                    for offset in reversed(range(1, n + 1)):
                        port = (served + offset) % n
                        with m.If(self.inputs[port].tvalid):
                            m.d.comb += [pick.eq(port), pick_valid.eq(1)]

        grant = Signal(range(n))
        grant_valid = Signal()
        with m.If(locked):
            m.d.comb += [grant.eq(current), grant_valid.eq(1)]
        with m.Else():
            m.d.comb += [grant.eq(pick), grant_valid.eq(pick_valid)]

        out = self.m_axis
        with m.Switch(grant):
            for i, s in enumerate(self.inputs):
                with m.Case(i):
                    m.d.comb += [
                        out.tdata.eq(s.tdata), out.tkeep.eq(s.tkeep), out.tlast.eq(s.tlast),
                        out.tuser.eq(Cat(s.tuser[0], grant)),
                        out.tvalid.eq(s.tvalid & grant_valid),
                        s.tready.eq(out.tready & grant_valid),
                    ]

        with m.If(out.tvalid & out.tready):
            m.d.sync += [locked.eq(~out.tlast), current.eq(grant)]
            with m.If(out.tlast):
                m.d.sync += last_served.eq(grant)
        return m

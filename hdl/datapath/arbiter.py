"""Packet-granular round-robin arbiter: N ingress streams into the shared pipeline."""

import functools
import operator

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import keep_copy

__all__ = ["PacketArbiter"]


class PacketArbiter(wiring.Component):
    """Merge ``n_ports`` AXI-Streams, switching only between frames, round robin.

    The grant is a register, chosen in the cycle of a frame's last beat, so a frame waiting on any
    port follows the previous frame's last beat with no idle cycle; a frame arriving at an idle
    arbiter waits one cycle for its grant. The output ``tuser`` carries the ingress
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

    ``ready_copies`` (optional): one value per port that equals ``m_axis.tready`` in every cycle,
    e.g. the copies of a :class:`hdl.lib.timing.Fanout` of the downstream ready; value i gates
    ``s_axis_<i>.tready`` instead of ``m_axis.tready`` (why: a downstream ready then reaches each
    ingress from a flip-flop next to it).

    ``last_gate`` (optional): a frame's last beat is taken from its port only while this is high
    (the switch spaces frames so; the consumer must gate ``m_axis.tready`` the same way).
    """

    def __init__(self, data_width: int, n_ports: int, *, ready_copies=None, last_gate=None):
        if ready_copies is not None and len(ready_copies) != n_ports:
            raise ValueError(f"ready_copies must have one value per port ({n_ports}), not {len(ready_copies)}")
        self.ready_copies = ready_copies
        self.last_gate = last_gate
        self.n_ports = n_ports
        self.port_bits = max(1, (n_ports - 1).bit_length())
        members = {f"s_axis_{i}": In(AXIStreamSignature(data_width, 1)) for i in range(n_ports)}
        members["m_axis"] = Out(AXIStreamSignature(data_width, 1 + self.port_bits))
        super().__init__(members)
        self.inputs = [getattr(self, f"s_axis_{i}") for i in range(n_ports)]

    def elaborate(self, platform):
        m = Module()
        n = self.n_ports
        out = self.m_axis
        valids = Cat(s.tvalid for s in self.inputs)

        # The grant is a one-hot register, so each port's tready is one AND of two register
        # outputs (grant bit, downstream tready). Why registered: decided combinationally it
        # fed the ingress slices' clock enables.
        grant = Signal(n)                      # one-hot, or zero while no port is granted
        index = Signal(range(n))               # binary copy of ``grant`` for the port tag
        # Why kept copies of the grant for the decisions below: `grant` itself fans out to the
        # data mux and the ingress slices, far from the next-grant logic.
        grant_ctl = keep_copy(grant, name="grant_ctl", reset_less=False)
        index_ctl = keep_copy(index, name="index_ctl", reset_less=False)
        locked = Signal()                      # inside a frame: the grant may not move
        last_served = Signal(range(n), init=n - 1)

        def round_robin(after):
            """The first port with tvalid after ``after`` (which comes last), one-hot and binary."""
            pick_oh, pick = Signal(n), Signal(range(n))
            with m.Switch(after):
                for served in range(n):
                    with m.Case(served):
                        # Later assignments win, so the nearest port after `served` is written last.
                        for offset in reversed(range(1, n + 1)):
                            port = (served + offset) % n
                            with m.If(valids[port]):
                                m.d.comb += [pick_oh.eq(1 << port), pick.eq(port)]
            return pick_oh, pick

        # At a frame's last beat the next grant is chosen from the heads of the other ports, with
        # the port just served last (its tvalid there is the beat leaving, so when it wins it is
        # only held as a guess: an empty granted port is re-picked below). Choosing in that cycle
        # lets a waiting frame follow with no idle cycle.
        next_oh, next_index = round_robin(index_ctl)
        # Between frames, a granted port that is not offering anything gives way.
        idle_oh, idle_index = round_robin(last_served)

        m.d.comb += out.tvalid.eq((valids & grant).any())
        for i, s in enumerate(self.inputs):
            ready = self.ready_copies[i] if self.ready_copies is not None else out.tready
            if self.last_gate is not None and self.ready_copies is not None:
                ready = ready & (~s.tlast | self.last_gate)
            m.d.comb += s.tready.eq(grant[i] & ready)
        # AND-OR on the one-hot grant, not a mux on the index: one level of logic per bit.
        for field in ("tdata", "tkeep", "tlast"):
            m.d.comb += getattr(out, field).eq(
                _or_reduce(getattr(s, field) & grant[i].replicate(len(getattr(s, field)))
                           for i, s in enumerate(self.inputs)))
        bad = _or_reduce(s.tuser[0] & grant[i] for i, s in enumerate(self.inputs))
        m.d.comb += out.tuser.eq(Cat(bad, index))

        def set_grant(one_hot, binary):
            m.d.sync += [grant.eq(one_hot), grant_ctl.eq(one_hot), index.eq(binary), index_ctl.eq(binary)]

        lasts = Cat(s.tlast for s in self.inputs)
        offering = (valids & grant_ctl).any()
        ending = (valids & lasts & grant_ctl).any()
        with m.If(offering & out.tready):
            m.d.sync += locked.eq(~ending)
            with m.If(ending):
                m.d.sync += last_served.eq(index_ctl)
                set_grant(next_oh, next_index)
        with m.Elif(~locked & ~offering):
            set_grant(idle_oh, idle_index)
        return m


def _or_reduce(terms):
    return functools.reduce(operator.or_, terms)

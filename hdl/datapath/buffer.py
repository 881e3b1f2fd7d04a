"""Store-and-forward packet buffer: holds each frame until its verdict, then sends or discards it whole."""

from amaranth import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.datapath.forward import make_descriptor_layout
from hdl.lib.ram import RamFifo
from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import Fanout, keep_copy
from hdl.profile import Target, target_for

__all__ = ["PacketBuffer"]

#: Frames admitted but not yet released; bounds the descriptor FIFO so it can never overflow.
DESCRIPTOR_DEPTH = 64


class PacketBuffer(wiring.Component):
    """Frame buffer between the parser and the egress ports.

    Every accepted beat is written to one beat FIFO. Descriptors (drop or egress port) arrive in
    frame order after each frame's last beat; the reader then streams the frame to its port or
    discards it at one beat per cycle, starting the next frame in the cycle the previous one ends.

    Frames longer than ``max_frame`` are still accepted at line rate, but only their first
    ``ceil(max_frame / bytes_per_beat)`` beats and their last beat are stored: the parser flags them
    oversize, so their descriptor always says drop and nothing truncated ever leaves.

    Known limit of this slice: one reader for all ports, so a stalled egress port stalls the others
    (per-port output queues come with the switch fabric).

    The target profile (:mod:`hdl.profile`) picks the beat FIFO (``target.fifo``). Without
    ``target.register_slices`` (AREA) the two input register stages and the registered ``space``
    are left out, and with ``target.block_ram_fifos`` the descriptor FIFO is in block RAM; the same
    frames leave, with less latency. (Not two classes: the writer, the reader and the descriptor
    accounting are shared, and the differences are register stages on their paths.)

    Parameters
    ----------
    config:
        Build parameters.
    target:
        The target profile; by default the config's (:func:`hdl.profile.target_for`).

    Members
    -------
    s_axis: In(AXIStreamSignature(W, 1 + port_bits))
        Always ready; the producer must honour ``space``.
    space: Out(1)
        High in cycle t: one beat may arrive on ``s_axis`` in cycle t + 1 (and in t if it was
        high in t - 1). The producer is one register stage upstream.
    desc: In(stream.Signature(descriptor, always_ready=True))
    m_axis_<i>: Out(AXIStreamSignature(W, 1)) per port (``self.outputs[i]``)
    """

    def __init__(self, config: NicConfig, target: Target | None = None, *, desc_layout=None):
        self.config = config
        self.target = target or target_for(config)
        w = config.data_width
        #: With a descriptor layout of its own (the switch's), the buffer has one output, every
        #: kept frame leaves through it with its descriptor on ``m_desc``, and the egress fan-out
        #: (:class:`hdl.switch.egress.EgressFanout`) places it in the ports' queues.
        self.fanout = desc_layout is not None
        self.desc_layout = desc_layout if self.fanout else make_descriptor_layout(config.port_bits)
        members = {
            "s_axis": In(AXIStreamSignature(w, 1 + config.port_bits)),
            "desc": In(stream.Signature(self.desc_layout, always_ready=True)),
            "space": Out(1),
        }
        n_out = 1 if self.fanout else len(config.ports)
        members.update({f"m_axis_{i}": Out(AXIStreamSignature(w, 1)) for i in range(n_out)})
        if self.fanout:
            members["m_desc"] = Out(self.desc_layout)
        super().__init__(members)
        self.outputs = [getattr(self, f"m_axis_{i}") for i in range(n_out)]
        #: ``space`` again as a flip-flop per ingress port, for that port's ready logic (why: one
        #: ``space`` for every port crosses a large die); None in builds without register slices,
        #: where the producer's ready is ``space`` itself.
        self.space_fanout = Fanout(len(config.ports), name="space_copy") if self.target.register_slices else None

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        w, bpb = cfg.data_width, cfg.bytes_per_beat
        max_beats = -(-cfg.max_frame // bpb)

        target = self.target
        slices = target.register_slices
        if not slices:
            # No slices (iCE40 at 24 MHz): the writer sits right at the input, so the FIFO's
            # look-ahead needs only its minimum slack (a writer one register upstream).
            m.submodules.beats = beats = target.fifo(w + bpb + 1, cfg.buffer_depth, slack=2)
        else:
            # Two register stages on the input before anything is decided (why: the parser sits
            # across the die from the block RAMs). With `space` registered once more on its way
            # out (below), the FIFO's look-ahead needs three more slots of slack than a writer
            # right at its input.
            m.submodules.beats = beats = target.fifo(w + bpb + 1, cfg.buffer_depth, slack=5)
        if target.block_ram_fifos:
            # Block RAM: one SB_RAM40_4K instead of DESCRIPTOR_DEPTH words of flip-flops.
            m.submodules.descs = descs = RamFifo(width=len(self.desc.payload.as_value()),
                                                 depth=DESCRIPTOR_DEPTH)
        else:
            # Small and read combinationally: distributed RAM, not block RAM.
            m.submodules.descs = descs = fifo.SyncFIFO(
                width=len(self.desc.payload.as_value()), depth=DESCRIPTOR_DEPTH)

        # --- writer ---------------------------------------------------------------------------
        # The input always accepts (tready is 1): the transfer strobe fans out to the parser's
        # whole header window, so it must be a plain register, not valid AND a ready computed
        # here. Flow control is `space` one cycle ahead instead, with enough slack for the
        # beats in flight: space high in cycle t allows a beat to arrive in cycle t + 1.
        s = self.s_axis
        if not slices:
            in_valid, in_last, in_data = s.tvalid, s.tlast, Cat(s.tdata, s.tkeep, s.tlast)
        else:
            near_valid, near_last = Signal(), Signal()
            near_data = Signal(w + bpb + 1, reset_less=True)
            m.d.sync += [near_valid.eq(s.tvalid), near_last.eq(s.tlast),
                         near_data.eq(Cat(s.tdata, s.tkeep, s.tlast))]
            in_valid, in_last = Signal(), Signal()
            in_data = Signal(w + bpb + 1, reset_less=True)
            m.d.sync += [in_valid.eq(near_valid), in_last.eq(near_last), in_data.eq(near_data)]
        in_frame = Signal()
        beat_index = Signal(range(max_beats + 1))      # saturates at max_beats
        truncating = Signal()                           # beat_index == max_beats
        outstanding = Signal(range(DESCRIPTOR_DEPTH + 1))
        frame_done = Signal()                           # reader released a frame this cycle

        store = ~truncating | in_last
        space = Signal()
        if not slices:
            # Descriptors: `outstanding` counts the frames started (first beat seen here) and
            # not yet released; the descriptor FIFO never holds more than that (a frame's
            # descriptor comes after its first beat and leaves the FIFO before its release).
            # `space` in cycle t compares `outstanding` of cycle t - 1, which counts first beats
            # up to t - 2; beats still to be counted then are those of t - 1, t (allowed by
            # earlier `space`) and t + 1 (allowed by this one): three frames at most, so keeping
            # two in reserve (outstanding <= DEPTH - 3 when `space` is high) bounds it by
            # DESCRIPTOR_DEPTH. The late release only makes `space` stricter. The beat FIFO's
            # `w_rdy` (slack 2) is the same look-ahead for beats; both go out unregistered.
            m.d.sync += space.eq(outstanding < DESCRIPTOR_DEPTH - 2)
            space_out = space & beats.w_rdy
        else:
            # BeatFifo.w_rdy keeps five slots in reserve; descriptors keep six (frames admitted
            # four cycles before they are counted here, and the one-cycle-late release). `space`
            # leaves through kept copies of one more register (why: they can sit by the arbiter).
            space_out = keep_copy(Signal(), name="space_out", reset_less=False)
            m.d.sync += [space.eq(outstanding < DESCRIPTOR_DEPTH - 6), space_out.eq(space & beats.w_rdy)]
            m.d.sync += self.space_fanout.eq(space & beats.w_rdy)
        m.d.comb += [
            s.tready.eq(1),
            self.space.eq(space_out),
            beats.w_data.eq(in_data),
            beats.w_en.eq(in_valid & store),
        ]
        sop_accepted = in_valid & ~in_frame
        with m.If(in_valid):
            m.d.sync += in_frame.eq(~in_last)
            with m.If(in_last):
                m.d.sync += [beat_index.eq(0), truncating.eq(0)]
            with m.Elif(~truncating):
                m.d.sync += [beat_index.eq(beat_index + 1), truncating.eq(beat_index == max_beats - 1)]
        # Released frames are subtracted a cycle late (a short path; admission only gets stricter).
        frame_done_q = Signal()
        m.d.sync += frame_done_q.eq(frame_done)
        m.d.sync += outstanding.eq(outstanding + sop_accepted - frame_done_q)

        m.d.comb += [descs.w_data.eq(self.desc.payload), descs.w_en.eq(self.desc.valid)]

        # --- reader ---------------------------------------------------------------------------
        active = Signal()
        cur_drop = Signal()
        cur_port = Signal(cfg.port_bits)
        desc_view = self.desc.payload.shape()(descs.r_data)
        if self.fanout:
            cur_desc = Signal(self.desc_layout)
            m.d.comb += self.m_desc.eq(cur_desc)

        r_tdata = beats.r_data[:w]
        r_tkeep = beats.r_data[w:w + bpb]
        r_tlast = beats.r_data[w + bpb]

        port_ready = Signal()
        with m.Switch(cur_port):
            for i, out in enumerate(self.outputs):
                with m.Case(i):
                    m.d.comb += port_ready.eq(out.tready)
        take = Signal()
        m.d.comb += [
            take.eq(active & beats.r_rdy & (cur_drop | port_ready)),
            beats.r_en.eq(take),
            frame_done.eq(take & r_tlast),
        ]
        for i, out in enumerate(self.outputs):
            m.d.comb += [
                out.tdata.eq(r_tdata), out.tkeep.eq(r_tkeep), out.tlast.eq(r_tlast), out.tuser.eq(0),
                out.tvalid.eq(active & beats.r_rdy & ~cur_drop & (cur_port == i)),
            ]

        load = descs.r_rdy & (~active | frame_done)
        m.d.comb += descs.r_en.eq(load)
        with m.If(load):
            m.d.sync += [active.eq(1), cur_drop.eq(desc_view.drop)]
            if self.fanout:
                m.d.sync += cur_desc.eq(desc_view)
            else:
                m.d.sync += cur_port.eq(desc_view.port)
        with m.Elif(frame_done):
            m.d.sync += active.eq(0)
        return m

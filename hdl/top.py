"""NicTop: the first NIC top, a two-port bump in the wire with the parser in the path.

::

    s_axis_<p0> -> slice -+                                      +-> slice -> m_axis_<p0>
                          +-> arbiter -> reg -> parser -> buffer -+
    s_axis_<p1> -> slice -+                 meta |        ^ desc    +-> slice -> m_axis_<p1>
                                                 v        |
                                            forwarder ----+--> record (monitor / recorder)
                                                 |
    s_axil -------------------------- CSR slave <+-- counter events (record, egress beats)

The target profile (:mod:`hdl.profile`: SPEED for large FPGAs, AREA for small ones) picks the CSR,
the FIFOs and the frame generators, and whether the register slices and the reset tree are built.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from hdl.board import linetest
from hdl.board.bridge import BRIDGE, BridgeEvent, UartBridge
from hdl.board.linetest import LINETEST, SignatureChecker
from hdl.config import NicConfig
from hdl.datapath.arbiter import PacketArbiter
from hdl.datapath.buffer import PacketBuffer
from hdl.datapath.forward import Forwarder
from hdl.datapath.ports import PORT, PortCounter, port_values
from hdl.lib.axil_slice import AXILiteSlice
from hdl.lib.skid import RegisterSlice
from hdl.lib.stream import AXILiteSignature, AXIStreamSignature, keep_count
from hdl.lib.timing import keep_copy, local_reset_domain
from hdl.mgmt.regs import IDENTITY, RegisterMap, RegisterMapBuilder, identity_values
from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_VERSION, HostTag
from hdl.packet.host_tag_insert import TAG_REQUEST, HostTagInsert
from hdl.packet.host_tag_strip import STRIP_RESULT, HostTagStrip, StripKind
from hdl.packet.meta import COUNTED_DROP_REASONS, MalformedReason, Verdict, verdict_record_of
from hdl.parser import make_parser
from hdl.parser.counters import PARSER, ParserCounter
from hdl.profile import target_for
from hdl.security.control import wire_security
from hdl.security.gate import SecurityGate, ips_descriptor_layout, ips_host_port
from hdl.security.payload import PayloadStage
from hdl.security.regs import (
    CONTROL_IPS_DIVERT,
    SECMATCH,
    SECPORT,
    SECURITY,
    SecportCounter,
    secmatch_values,
    secport_values,
    security_values,
)
from hdl.security.stage import SecurityStage
from hdl.switch.control import wire_switch
from hdl.switch.egress import EgressFanout
from hdl.switch.ingress import IngressFifo
from hdl.switch.recorder import FlightRecorder
from hdl.switch.regs import SWITCH, SWPORT, SwportCounter, switch_values, swport_values
from hdl.switch.stage import FRAME_CYCLES, SwitchStage, make_switch_descriptor_layout

__all__ = ["NicTop", "build_register_map", "TOP_NAME"]

TOP_NAME = "secnic_top"


class NicTop(wiring.Component):
    """The NIC: packet ports, CSR bus and the per-frame record port.

    Parameters
    ----------
    config:
        Build parameters; ``config.ports`` names the ports (exactly two in this slice).

    Members
    -------
    s_axis_<port>: In(AXIStreamSignature(W, 1))
        Ingress of each port (frames from the wire or the VM).
    m_axis_<port>: Out(AXIStreamSignature(W, 1))
        Egress of each port.
    s_axil: In(AXILiteSignature)
        Management plane (register map: :func:`hdl.top.build_register_map`).
    record: Out(stream.Signature(verdict record, always_ready=True))
        One pulse per frame with its metadata and verdict; left unconnected in board builds.
    ingress_end, ingress_drop: Out(n_ports), only with ``config.ingress = "drop"``
        Bit i: a frame's last beat entered port i's ingress FIFO; ``ingress_drop``: and the FIFO
        dropped that frame whole. Port i's frames get their fate in order, so a testbench learns
        which frames never reached the pipeline (:mod:`sim.run.nic_cocotb`); unconnected on boards.

    With ``reset_tree`` (by default ``target.reset_tree``: on in SPEED builds, off in AREA ones)
    each block takes its reset from a register of its own, in a clock domain of its own on the
    core clock (:func:`hdl.lib.timing.local_reset_domain`; why: one reset net from one flip-flop
    to every block crosses a large die). Amaranth's own simulator races on such a domain, so pass
    ``reset_tree=False`` to simulate NicTop there.
    """

    def __init__(self, config: NicConfig | None = None, *, reset_tree: bool | None = None):
        self.config = config = config or NicConfig()
        self.target = target_for(config)
        self.reset_tree = self.target.reset_tree if reset_tree is None else reset_tree
        self.regmap = build_register_map(config)
        w = config.data_width
        members = {}
        for name in config.ports:
            members[f"s_axis_{name}"] = In(AXIStreamSignature(w, 1))
            members[f"m_axis_{name}"] = Out(AXIStreamSignature(w, 1))
        if config.uart_bridge:
            members["uart_rx"] = In(1, init=1)
            members["uart_tx"] = Out(1, init=1)
        else:
            members["s_axil"] = In(AXILiteSignature(self.regmap.address_width))
        members["record"] = Out(stream.Signature(verdict_record_of(config), always_ready=True))
        if config.ingress_fifos:
            n = len(config.ports)
            members["ingress_end"] = Out(n)
            members["ingress_drop"] = Out(n)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        target = self.target
        w = cfg.data_width

        parser = make_parser(cfg)                             # NicConfig.parser picks the architecture
        switch = cfg.switch is not None
        security = cfg.security is not None
        # IPS: a switch NIC with a host port diverts frames there, tagged (docs/security.md).
        ips_host = ips_host_port(cfg)
        switch_desc = make_switch_descriptor_layout(cfg) if switch else None
        buffer = PacketBuffer(cfg, target, desc_layout=switch_desc if ips_host is None
                              else ips_descriptor_layout(cfg, switch_desc))
        # The switch stage takes a frame per FRAME_CYCLES cycles: a frame's last beat waits until
        # that many cycles have passed since the previous one (`frame_gap_ok`, a register). So
        # does the security stage (one flow request and one ACL key per frame).
        frame_paced = switch or security
        frame_gap_ok = Signal(init=1)
        # Each ingress port's ready comes from a flip-flop of its own (the buffer's space fan-out).
        ready_copies = None
        if buffer.space_fanout is not None:
            ready_copies = [copy & parser.space for copy in buffer.space_fanout]
        arbiter = self._add(m, "arbiter", PacketArbiter(w, len(cfg.ports), ready_copies=ready_copies,
                                                        last_gate=frame_gap_ok if frame_paced else None))
        self._add(m, "parser", parser)
        if switch:
            forwarder = self._add(m, "switch", SwitchStage(cfg))
            fanout = self._add(m, "egress", EgressFanout(cfg))
            recorder = self._add(m, "recorder", FlightRecorder(cfg.switch.recorder_depth, cfg.port_bits,
                                                                len(cfg.ports)))
            port_sources = list(fanout.outputs)
            if ips_host_port(cfg) is not None:
                # The host port's egress tags the frames IPS mode diverts (and only them).
                self._host_tag = self._add(m, "host_tag_insert", HostTagInsert(w))
                connect(m, fanout.outputs[ips_host_port(cfg)], self._host_tag.s_axis)
                port_sources[ips_host_port(cfg)] = self._host_tag.m_axis
        else:
            forwarder = self._add(m, "forwarder", Forwarder(cfg))
            port_sources = buffer.outputs
        matcher = security and cfg.security.matcher is not None
        payload_stage = None
        if security:
            sec_stage = self._add(m, "security", SecurityStage(cfg))
            gate = self._add(m, "security_gate", SecurityGate(cfg, switch_desc if switch else buffer.desc_layout))
        if matcher:
            payload_stage = self._add(m, "payload", PayloadStage(cfg, index_bits=cfg.security.matcher_index_bits,
                                                                 max_hits=cfg.security.matcher_max_hits))
        self._add(m, "buffer", buffer)
        csr = self._add(m, "csr", target.csr(self.regmap))

        for i, name in enumerate(cfg.ports):
            port_in = wiring.flipped(getattr(self, f"s_axis_{name}"))
            port_out = wiring.flipped(getattr(self, f"m_axis_{name}"))
            if not target.register_slices:
                # No register slices (they only cut long routes on a big ECP5).
                if cfg.line_tester:
                    port_in = self._line_tester_ingress(m, csr, i, name, port_in)
                if cfg.ingress_fifos:
                    port_in = self._ingress_fifo(m, csr, i, name, port_in)
                if i == ips_host:
                    port_in = self._host_tag_strip(m, port_in)
                connect(m, port_in, arbiter.inputs[i])
                connect(m, port_sources[i], port_out)
            else:
                ingress = self._add(m, f"ingress_{name}", RegisterSlice(w, 1))
                egress = self._add(m, f"egress_{name}", RegisterSlice(w, 1))
                if cfg.line_tester:
                    port_in = self._line_tester_ingress(m, csr, i, name, port_in)
                if cfg.ingress_fifos:
                    # The slice then sits between the FIFO and the arbiter (the long route).
                    port_in = self._ingress_fifo(m, csr, i, name, port_in)
                if i == ips_host:
                    port_in = self._host_tag_strip(m, port_in)
                connect(m, port_in, ingress.s_axis)
                connect(m, ingress.m_axis, arbiter.inputs[i])
                connect(m, port_sources[i], egress.s_axis)
                connect(m, egress.m_axis, port_out)
            if cfg.line_tester:
                out = getattr(self, f"m_axis_{name}")
                checker = self._add(m, f"checker_{name}", SignatureChecker(w))
                m.d.comb += [checker.tdata.eq(out.tdata), checker.tkeep.eq(out.tkeep),
                             checker.beat.eq(out.tvalid & out.tready),
                             csr.status(self.regmap.block(LINETEST), linetest.SIGNATURE[i]).eq(checker.value)]

        # One register between the arbiter and the parser; the buffer's `space` flag (one cycle
        # ahead, with slack) is the flow control, so the beat strobe the parser's window capture
        # fans out to is a register output. The sequential parser has a `space` of its own (same
        # contract); the pipelined one never holds frames back.
        # Full builds give the buffer a copy of that register of its own (both parsers pass the
        # stream through untouched; why: one register between the buffer's RAM and the parser's
        # compares is far from both).
        pipe = parser.s_axis
        space = buffer.space & parser.space
        if security:
            space = space & sec_stage.space & gate.space
        if frame_paced:
            space = space & (~arbiter.m_axis.tlast | frame_gap_ok)
        take = arbiter.m_axis.tvalid & space
        m.d.comb += arbiter.m_axis.tready.eq(space)
        if frame_paced:
            since_last = Signal(range(FRAME_CYCLES), init=FRAME_CYCLES - 1)
            with m.If(take & arbiter.m_axis.tlast):
                m.d.sync += [since_last.eq(0), frame_gap_ok.eq(0)]
            with m.Elif(since_last != FRAME_CYCLES - 1):
                m.d.sync += [since_last.eq(since_last + 1), frame_gap_ok.eq(since_last >= FRAME_CYCLES - 2)]
        payload = ("tdata", "tkeep", "tlast", "tuser")
        copies = [{f: getattr(pipe, f) for f in ("tvalid",) + payload}]
        if target.register_slices:
            copies.append({f: keep_copy(reg, name=f"buffer_pipe_{f}", reset_less=f != "tvalid")
                           for f, reg in copies[0].items()})
            if matcher:
                # The payload matcher's tap: the beats the buffer takes, from a copy of its own
                # (the matcher's beat FIFO sits apart from the buffer's RAMs).
                copies.append({f: keep_copy(reg, name=f"payload_pipe_{f}", reset_less=f != "tvalid")
                               for f, reg in copies[0].items()})
        for regs in copies:
            m.d.sync += regs["tvalid"].eq(take)
            with m.If(take):
                m.d.sync += [regs[f].eq(getattr(arbiter.m_axis, f)) for f in payload]
        if not target.register_slices:
            connect(m, parser.m_axis, buffer.s_axis)
        else:
            m.d.comb += [*(getattr(buffer.s_axis, f).eq(reg) for f, reg in copies[1].items()),
                         parser.m_axis.tready.eq(buffer.s_axis.tready)]
        if ips_host is None:
            connect(m, parser.meta, forwarder.parsed)
        else:
            self._host_frames(m, parser, forwarder, gate, ips_host)
        if matcher:
            # The matcher sees every beat the packet buffer takes (the buffer is always ready) and
            # the parser's record of each frame; it never holds either back (docs/matcher.md).
            tap = payload_stage.beat
            beats = copies[2] if target.register_slices else {
                "tvalid": buffer.s_axis.tvalid & buffer.s_axis.tready,
                **{f: getattr(buffer.s_axis, f) for f in payload}}
            m.d.comb += [tap.valid.eq(beats["tvalid"]), tap.tdata.eq(beats["tdata"]), tap.tkeep.eq(beats["tkeep"]),
                         tap.tlast.eq(beats["tlast"]),
                         payload_stage.parsed.valid.eq(forwarder.parsed.valid),
                         payload_stage.parsed.payload.eq(forwarder.parsed.payload)]
            connect(m, payload_stage.result, gate.s_match)
        record = forwarder.record
        if not security:
            connect(m, forwarder.desc, buffer.desc)
            connect(m, forwarder.record, wiring.flipped(self.record))
        else:
            # The security stage sees the same metadata pulse as the forwarder; the gate holds the
            # forwarder's decision until the stage's answer for the frame comes, then applies it.
            m.d.comb += [sec_stage.parsed.valid.eq(forwarder.parsed.valid),
                         sec_stage.parsed.payload.eq(forwarder.parsed.payload)]
            connect(m, forwarder.desc, gate.s_desc)
            if ips_host is not None:
                m.d.comb += gate.ips_divert.eq(
                    csr.rw(self.regmap.block(SECURITY), SECURITY.register("CONTROL"))[CONTROL_IPS_DIVERT])
            connect(m, forwarder.record, gate.s_record)
            connect(m, sec_stage.result, gate.s_result)
            connect(m, gate.m_desc, buffer.desc)
            connect(m, gate.m_record, wiring.flipped(self.record))
            wire_security(m, csr, self.regmap, cfg, sec_stage, gate, payload_stage)
            record = gate.m_record
            if ips_host is not None:
                self._reinjected = gate.m_reinjected
            if switch:
                # The ACL mirror's copies go to the mirror session's monitor port (docs/security.md).
                m.d.comb += gate.mirror_dest.eq(Mux(forwarder.mirror_enable, 1 << forwarder.mirror_to, 0))
        if switch:
            connect(m, buffer.outputs[0], fanout.s_axis)
            if ips_host is None:
                m.d.comb += fanout.s_desc.eq(buffer.m_desc)
            else:
                self._host_tagging(m, buffer, fanout, ips_host, switch_desc)
            wire_switch(m, csr, self.regmap, cfg, forwarder, fanout, recorder)
        if cfg.uart_bridge:
            bridge = self._add(m, "bridge", UartBridge(
                clk_hz=round(cfg.clock_mhz * 1e6), baud=cfg.uart_baud, addr_width=self.regmap.address_width,
                target=target))
            if not target.register_slices:
                connect(m, bridge.m_axil, csr.s_axil)
            else:
                # The bridge and the CSR sit far apart on a large die: one register per channel.
                bridge_slice = self._add(m, "bridge_slice", AXILiteSlice(self.regmap.address_width))
                connect(m, bridge.m_axil, bridge_slice.s_axil)
                connect(m, bridge_slice.m_axil, csr.s_axil)
            m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]
            bridge_regs = self.regmap.block(BRIDGE)
            for event in BridgeEvent:
                m.d.comb += csr.count(bridge_regs.event(event)).eq(getattr(bridge, event.value))
        else:
            connect(m, wiring.flipped(self.s_axil), csr.s_axil)

        self._count(m, csr, record)
        return m

    def _host_tag_strip(self, m, port_in):
        """The host port's ingress through :class:`HostTagStrip` (IPS re-injections); its per-frame
        results wait in ``host_tags`` for the frame's parser record. Returns the stripped stream."""
        strip = self._add(m, "host_tag_strip", HostTagStrip(self.config.data_width, len(self.config.ports)))
        connect(m, port_in, strip.s_axis)
        # Host frames between the strip and the parser's record: the ingress slice, the arbiter's
        # and the parser's few, one per FRAME_CYCLES.
        self._host_tags = SyncFIFOBuffered(width=STRIP_RESULT.size, depth=16)
        m.submodules.host_tags = self._host_tags
        m.d.comb += [self._host_tags.w_en.eq(strip.m_tag.valid), self._host_tags.w_data.eq(strip.m_tag.payload)]
        return strip.m_axis

    def _host_frames(self, m, parser, forwarder, gate, host):
        """Re-injections and bad tags past the switch (IPS, docs/security.md): the switch stage sees
        such a frame with ``rx_error`` (so it neither learns nor switches it) and the gate, told what
        the strip found with the switch's descriptor, sends or drops it. Both steps keep frame order,
        so each takes its host frame's result from a FIFO."""
        tags = self._host_tags
        meta = parser.meta
        found = STRIP_RESULT(tags.r_data)
        from_host = meta.valid & (meta.payload.in_port == host)
        m.d.comb += [forwarder.parsed.valid.eq(meta.valid), forwarder.parsed.payload.eq(meta.payload),
                     tags.r_en.eq(from_host)]
        with m.If(from_host & (found.kind != StripKind.NONE)):
            m.d.comb += forwarder.parsed.payload.rx_error.eq(1)
        # The switch's descriptor comes a few cycles later, frames in order.
        pending = SyncFIFOBuffered(width=STRIP_RESULT.size, depth=8)
        m.submodules.host_tags_pending = pending
        desc_from_host = forwarder.desc.valid & (forwarder.record.payload.in_port == host)
        m.d.comb += [pending.w_en.eq(from_host), pending.w_data.eq(tags.r_data), pending.r_en.eq(desc_from_host),
                     gate.s_host.eq(Mux(desc_from_host, pending.r_data, 0))]

    def _host_tagging(self, m, buffer, fanout, host, switch_desc):
        """The fan-out's descriptors and the host port's tag requests (IPS, docs/security.md).

        A diverted frame leaves the host port as it was received, the tag inserted after: the
        fan-out is told to keep its 802.1Q tag as it is (``in_tagged`` as the host port's tagging of
        the frame's VLAN would find it, so the edit is KEEP). The host port's :class:`HostTagInsert`
        takes one request per frame its queue admits, in order: the fan-out decides the admission
        two cycles after the frame's first beat (``queue_drop`` then says the port dropped it), so
        the request follows the frame's first beat through two registers and is kept unless dropped.
        """
        d = buffer.m_desc
        m.d.comb += fanout.s_desc.eq(d.as_value()[:switch_desc.size])
        untagged = ~fanout.port_trunk[host] | (getattr(fanout, f"port_pvid_{host}") == d.vlan)
        with m.If(d.divert):
            m.d.comb += [fanout.s_desc.in_tagged.eq(~untagged), fanout.s_desc.in_priority.eq(0),
                         fanout.s_desc.mirror_plain.eq(0)]
        req = Signal(TAG_REQUEST)
        m.d.comb += [req.insert.eq(d.divert), req.tag.tpid.eq(HOST_TAG_ETHERTYPE), req.tag.version.eq(HOST_TAG_VERSION),
                     req.tag.acl_punt.eq(d.tag_acl_punt), req.tag.match_punt.eq(d.tag_match_punt),
                     req.tag.in_port.eq(d.tag_in_port), req.tag.vlan.eq(d.vlan), req.tag.egress.eq(d.tag_egress)]
        beat = buffer.outputs[0]
        in_frame = Signal(name="host_tag_in_frame")
        with m.If(beat.tvalid & beat.tready):
            m.d.sync += in_frame.eq(~beat.tlast)
        start = beat.tvalid & beat.tready & ~in_frame & d.egress[host]
        # Host-bound frames the fan-out has yet to admit or drop, then admitted: at most the frames
        # its queue holds (EDIT_QUEUE_DEPTH) plus those in its tag editor and the inserter.
        requests = SyncFIFOBuffered(width=TAG_REQUEST.size, depth=64)
        m.submodules.host_tag_requests = requests
        valid1, valid2 = Signal(), Signal()
        req1, req2 = Signal(TAG_REQUEST), Signal(TAG_REQUEST)
        m.d.sync += [valid1.eq(start), req1.eq(req), valid2.eq(valid1), req2.eq(req1)]
        ins = self._host_tag
        m.d.comb += [requests.w_en.eq(valid2 & ~fanout.queue_drop[host]), requests.w_data.eq(req2),
                     ins.s_tag.valid.eq(requests.r_rdy), ins.s_tag.payload.eq(requests.r_data),
                     requests.r_en.eq(ins.s_tag.ready)]

    def _add(self, m, name, block):
        """Add ``block`` as submodule ``name``, in its own reset domain with ``reset_tree``."""
        if not self.reset_tree:
            m.submodules[name] = block
            return block
        m.submodules[name] = local_reset_domain(m, name, block)
        return block

    def _ingress_fifo(self, m, csr, index, name, port_in):
        """Put port ``index``'s ingress FIFO (``ingress = "drop"``) after ``port_in``; count its drops
        in the port's SWPORT block and show them on ``ingress_end``/``ingress_drop``. Returns the
        FIFO's output stream."""
        cfg = self.config
        fifo = self._add(m, f"ingress_fifo_{name}", IngressFifo(cfg.data_width, cfg.ingress_depth))
        connect(m, port_in, fifo.s_axis)
        block = self.regmap.block(SWPORT, index)
        m.d.comb += [csr.count(block.event(SwportCounter.INGRESS_FULL)).eq(fifo.drop_full),
                     csr.count(block.event(SwportCounter.INGRESS_TOO_LONG)).eq(fifo.drop_too_long),
                     self.ingress_end[index].eq(fifo.frame_end),
                     self.ingress_drop[index].eq(fifo.drop_full | fifo.drop_too_long)]
        return fifo.m_axis

    def _line_tester_ingress(self, m, csr, index, name, port_in):
        """Put a frame generator in front of ingress port ``index``; it takes over while enabled.

        The switch between the external port and the generator happens only between frames.
        """
        cfg = self.config
        slices = self.target.register_slices
        gen = self._add(m, f"generator_{name}", self.target.frame_generator(cfg.data_width, index))
        # FRAME_LEN clamped to 60..max_frame in registered steps (a copy, 32-bit compares, a mux).
        # Without slices: in one step; the generator registers what it derives from the length.
        regs = self.regmap.block(LINETEST)
        frame_len = csr.rw(regs, linetest.FRAME_LEN)
        if not slices:
            len_short, len_long, len_raw = frame_len < 60, frame_len > cfg.max_frame, frame_len[:14]
        else:
            # A kept copy per port, next to its generator, before the compares (why: the CSR's
            # flip-flop is far away, and one merged copy crosses the die to the other port).
            len_copy = keep_copy(frame_len, name=f"len_copy_{name}")
            len_short, len_long = Signal(name=f"len_short_{name}"), Signal(name=f"len_long_{name}")
            len_raw = Signal(14, name=f"len_raw_{name}")
            m.d.sync += [len_copy.eq(frame_len), len_short.eq(len_copy < 60),
                         len_long.eq(len_copy > cfg.max_frame), len_raw.eq(len_copy)]
        m.d.comb += [
            gen.frame_len.eq(Mux(len_short, 60, Mux(len_long, cfg.max_frame, len_raw))),
            gen.gap.eq(csr.rw(regs, linetest.GAP)),
            gen.seed.eq(csr.rw(regs, linetest.SEED)),
            # Marked with the port number (linetest.port_mark: peers address each other).
            gen.template.eq(Cat(*(csr.rw(regs, word) for word in linetest.TEMPLATE)) ^ linetest.port_mark(index)),
        ]
        if not slices:
            gen_stream, gen_busy = gen.m_axis, gen.busy
        else:
            # A register slice after the generator (why: its template mux must not share a cycle
            # with the ingress mux and slice).
            gen_out = self._add(m, f"generator_slice_{name}", RegisterSlice(cfg.data_width, 1))
            connect(m, gen.m_axis, gen_out.s_axis)
            gen_stream = gen_out.m_axis
            gen_busy = gen.busy | gen_out.m_axis.tvalid
        use_gen = Signal(name=f"use_generator_{name}")
        # The generator decides to start a frame from `enable` registered twice: `use_gen` may
        # fall (hand the port back) only once the enable has been low for two cycles, or a frame
        # started after the switch waits on tready = 0 forever and the generator never goes idle.
        ctrl = csr.rw(regs, linetest.CONTROL)[0]
        enable_history = Signal(2, name=f"gen_enable_history_{name}")
        m.d.sync += enable_history.eq(Cat(gen.enable, enable_history[0]))
        ext_in_frame = Signal(name=f"ext_in_frame_{name}")
        may_switch = ~ext_in_frame & ~gen_busy & (ctrl | (enable_history == 0))
        mux = AXIStreamSignature(cfg.data_width, 1).create(path=(f"ingress_mux_{name}",))
        with m.If(port_in.tvalid & port_in.tready):
            m.d.sync += ext_in_frame.eq(~port_in.tlast)
        with m.If(may_switch):
            m.d.sync += use_gen.eq(ctrl)
        # The port's tready is gated by a kept copy of `use_gen` (why: the gating then sits by
        # the port's flip-flops). The generator side needs no gate: while `use_gen` is low the
        # generator and its slice are empty (the switch waits for `gen_busy` to fall) and it
        # cannot start a frame (`enable` is low and was for two cycles before the switch).
        use_gen_p = keep_copy(use_gen, name=f"use_generator_p_{name}", reset_less=False)
        with m.If(may_switch):
            m.d.sync += use_gen_p.eq(ctrl)
        m.d.comb += gen.enable.eq(use_gen & ctrl)
        g = gen_stream
        m.d.comb += [g.tready.eq(mux.tready), port_in.tready.eq(~use_gen_p & mux.tready)]
        with m.If(use_gen):
            m.d.comb += [mux.tdata.eq(g.tdata), mux.tkeep.eq(g.tkeep), mux.tlast.eq(g.tlast),
                         mux.tuser.eq(g.tuser), mux.tvalid.eq(g.tvalid)]
        with m.Else():
            m.d.comb += [mux.tdata.eq(port_in.tdata), mux.tkeep.eq(port_in.tkeep),
                         mux.tlast.eq(port_in.tlast), mux.tuser.eq(port_in.tuser),
                         mux.tvalid.eq(port_in.tvalid)]
        return mux

    def _count(self, m, csr, record):
        """Drive the counter increments: RX and drops from the record, TX at the egress ports."""
        cfg = self.config
        rec = record.payload
        # IPS: a re-injection is counted in and out but not parsed (the model's `_reinject`).
        reinjected = self._reinjected if ips_host_port(cfg) is not None else 0
        for i, name in enumerate(cfg.ports):
            port = self.regmap.block(PORT, i)
            mine = record.valid & (rec.in_port == i)
            rx_bytes = rec.meta.frame_len
            if ips_host_port(cfg) == i:
                # A re-injection's record has the frame without its host tag (the strip took it).
                rx_bytes = rec.meta.frame_len + Mux(reinjected, HostTag.BYTES, 0)
            m.d.comb += [
                csr.count(port.event(PortCounter.RX_PACKETS)).eq(mine),
                csr.count(port.event(PortCounter.RX_BYTES)).eq(mine.replicate(len(rx_bytes)) & rx_bytes),
            ]
            for reason in COUNTED_DROP_REASONS:
                m.d.comb += csr.count(port.event(reason)).eq(
                    mine & (rec.verdict == Verdict.DROP) & (rec.reason == reason))

            out = getattr(self, f"m_axis_{name}")
            beat = out.tvalid & out.tready
            nbytes = Signal(range(cfg.bytes_per_beat + 1), name=f"tx_bytes_{name}")
            m.d.comb += nbytes.eq(keep_count(out.tkeep, cfg.bytes_per_beat))
            m.d.comb += [
                csr.count(port.event(PortCounter.TX_PACKETS)).eq(beat & out.tlast),
                csr.count(port.event(PortCounter.TX_BYTES)).eq(beat.replicate(len(nbytes)) & nbytes),
            ]

            if ips_host_port(cfg) is not None:
                # IPS: a diverted frame's record has verdict PUNT (only the gate gives it).
                secport = self.regmap.block(SECPORT, i)
                m.d.comb += [
                    csr.count(secport.event(SecportCounter.IPS_DIVERTS)).eq(mine & (rec.verdict == Verdict.PUNT)),
                    csr.count(secport.event(SecportCounter.IPS_REINJECTS)).eq(mine & reinjected)]

        parser = self.regmap.block(PARSER)
        parsed = record.valid & ~reinjected
        m.d.comb += csr.count(parser.event(ParserCounter.PACKETS)).eq(parsed)
        for reason in MalformedReason:
            m.d.comb += csr.count(parser.event(reason)).eq(parsed & rec.meta.malformed[reason])


def build_register_map(config: NicConfig) -> RegisterMap:
    """The register blocks of a build of ``config``, in chain order: IDENTITY, one PORT per port,
    PARSER, then SWITCH and one SWPORT per port, SECURITY, one SECPORT per port and SECMATCH (with
    the payload matcher), BRIDGE and LINETEST when the build has them.

    Each block type is declared next to the component that owns its registers; this is only
    where the NIC places the blocks of the components it instantiates.
    """
    regs = RegisterMapBuilder(config.counter_width, bytes_per_beat=config.bytes_per_beat)
    regs.add(IDENTITY, values=identity_values(config))
    for index in range(len(config.ports)):
        regs.add(PORT, index, port_values(config, index))
    regs.add(PARSER)
    if config.switch is not None:
        regs.add(SWITCH, values=switch_values(config))
        for index in range(len(config.ports)):
            regs.add(SWPORT, index, swport_values(config, index))
    if config.security is not None:
        regs.add(SECURITY, values=security_values(config))
        for index in range(len(config.ports)):
            regs.add(SECPORT, index, secport_values(config, index))
        if config.security.matcher is not None:
            regs.add(SECMATCH, values=secmatch_values(config))
    if config.uart_bridge:
        regs.add(BRIDGE)
    if config.line_tester:
        regs.add(LINETEST)
    return regs.build()

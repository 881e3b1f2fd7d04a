"""The payload matcher's way into the NIC: per-frame payload bounds from the parser's record.

:class:`hdl.matcher.Matcher` needs each frame's payload bounds with the frame's first beat, but
in the NIC the parser's record (``parsed``, :func:`hdl.packet.meta.make_parsed_layout`) arrives
only after the frame's last beat. :class:`PayloadStage` therefore taps the beats as they enter the
packet buffer, keeps them in a block-RAM FIFO, and replays each frame into the matcher once its
record is known. docs/matcher.md ("In the NIC") has the ports, the latency and the figures.

The payload is the IP payload, as :func:`host_driver.inspect.payload_bounds` defines it (the golden
model and the host path use that function): from ``payload_offset`` to the end of the IP datagram,
``l3_offset + total_length`` (IPv4) or ``l3_offset + 40 + payload_length`` (IPv6), clipped to the
frame, so Ethernet padding is never payload. PacketMeta carries no IP length, so the stage reads
the length field from the beats itself: it keeps frame bytes 16..27, which hold the IPv4 total
length (at ``l3_offset + 2``) and the IPv6 payload length (at ``l3_offset + 4``) for the three
places L3 can start (14, 18, 22: up to two VLAN tags, docs/parser.md).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import BeatFifo, OutputQueue
from hdl.lib.skid import RegisterSlice
from hdl.matcher import OFFSET_BITS as MATCHER_OFFSET_BITS
from hdl.matcher import PIPELINE_BEATS, Matcher, result_layout, write_layout
from hdl.packet.meta import OFFSET_BITS as META_OFFSET_BITS
from hdl.packet.meta import L3Type, make_parsed_layout
from hdl.security.regs import MATCHER_COUNTERS

__all__ = ["PayloadStage", "payload_result_layout", "tap_signature", "L3_OFFSETS", "LENGTH_BYTES",
           "FRAME_SPACING", "RECORD_DELAY_MAX"]

#: Where L3 can start: after the Ethernet header and up to two VLAN tags (docs/parser.md).
L3_OFFSETS = (14, 18, 22)
#: Frame bytes kept per frame: every IPv4 total length (``l3 + 2``) and IPv6 payload length
#: (``l3 + 4``) field for those L3 offsets.
LENGTH_BYTES = range(L3_OFFSETS[0] + 2, L3_OFFSETS[-1] + 6)
#: The NIC pipeline delivers at most one frame per this many cycles (hdl.switch.stage.FRAME_CYCLES).
FRAME_SPACING = 8
#: Latest cycle after a frame's last beat at which its record may come: the sequential parser's
#: bound with 4 slots (docs/parser.md, ``16 * slots + 3``); the pipelined parser takes 13.
RECORD_DELAY_MAX = 67
# Cycles from a record to its frame's first replayed beat, at most (queues and bounds pipeline).
_REPLAY_DELAY = 16
# Frames between the tap and the record that completes them: (RECORD_DELAY_MAX / FRAME_SPACING) + 2.
_PENDING_FRAMES = 16
assert _PENDING_FRAMES >= RECORD_DELAY_MAX // FRAME_SPACING + 2
# Frames inside the matcher: it takes a frame's last beat only while its result FIFO (32) has room
# for every frame still in its pipeline.
_FLAGS_DEPTH = 32
assert _FLAGS_DEPTH > PIPELINE_BEATS + 3


def _pow2(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def tap_signature(data_width: int) -> wiring.Signature:
    """The beat tap: a copy of each beat as the packet buffer takes it (no ``tready``: never held)."""
    return wiring.Signature({"valid": Out(1), "tdata": Out(data_width), "tkeep": Out(data_width // 8),
                             "tlast": Out(1)})


def payload_result_layout(index_bits: int, max_hits: int) -> data.StructLayout:
    """Per frame: the Matcher's :func:`~hdl.matcher.result_layout` plus ``skipped`` (no payload to
    inspect: not IP, no payload offset, malformed or rx_error; nothing else set) and ``too_long``
    (the frame did not fit in the FIFO; ``punt`` is set when it has a payload)."""
    fields = {name: field.shape for name, field in result_layout(index_bits, max_hits)}
    return data.StructLayout({**fields, "skipped": 1, "too_long": 1})


def _info_layout(count_bits: int) -> data.StructLayout:
    """What the tap knows of a frame at its last beat."""
    return data.StructLayout({"last_index": count_bits, "empty": 1, "too_long": 1,
                              "length_bytes": 8 * len(LENGTH_BYTES)})


def _record_layout() -> data.StructLayout:
    """The fields of the parser's record the bounds need."""
    return data.StructLayout({"has_payload": 1, "l3_type": L3Type, "l3_offset": META_OFFSET_BITS,
                              "payload_offset": META_OFFSET_BITS})


def _job_layout(count_bits: int) -> data.StructLayout:
    """One frame to replay into the matcher."""
    return data.StructLayout({"payload_offset": META_OFFSET_BITS, "payload_len": MATCHER_OFFSET_BITS,
                              "last_index": count_bits, "empty": 1, "one_beat": 1, "two_beats": 1,
                              "skipped": 1, "too_long": 1, "punt": 1})


class PayloadStage(wiring.Component):
    """The payload matcher fed from the NIC pipeline: beats from a tap, bounds from the parser's record.

    Each beat of ``beat`` is written into a block-RAM FIFO (``fifo_beats`` deep); the tap is never
    back-pressured. When a frame's ``parsed`` record has come (after its last beat, any delay up
    to :data:`RECORD_DELAY_MAX`), the frame's payload bounds are computed and the frame is read
    out of the FIFO into a :class:`~hdl.matcher.Matcher`. ``result`` gives one result per frame,
    in frame order (docs/matcher.md, "In the NIC").

    A frame whose beats do not all fit in the FIFO (longer than it, or arriving while it is still
    full) keeps only the beats that fitted, is not matched, and its result says ``too_long`` and,
    if it has a payload, ``punt``: the host must look. It is counted in ``MATCHER_TOO_LONG``. The
    default depth holds two maximum frames plus the beats that arrive while a record is awaited,
    so with the NIC's arrival contract (one beat per cycle, at most one frame per
    :data:`FRAME_SPACING` cycles, frames of at most ``config.max_frame`` bytes: longer ones are
    dropped as oversize, records at most :data:`RECORD_DELAY_MAX` cycles after the last beat) no
    frame is ever too long. The queues between the tap, the records and the replay are sized by
    the same contract (16 frames awaiting their record; every frame the FIFO can hold awaiting
    its replay).

    Parameters
    ----------
    config : NicConfig
        Data width, ``max_frame`` and ``port_bits`` (the record layout).
    index_bits, tag_bits, max_hits : int
        The matcher's (:class:`hdl.matcher.Matcher`).
    fifo_beats : int or None
        Beat FIFO depth, a power of two; None: two maximum frames plus the record delay.

    Members
    -------
    beat : In(tap_signature(data_width))
        The beats entering the packet buffer (``tkeep`` is not needed: the record has the length).
    parsed : In(stream.Signature(make_parsed_layout(port_bits), always_ready=True))
        The parser's per-frame record, as the forwarder gets it, after the frame's last beat.
    result : Out(stream.Signature(payload_result_layout(index_bits, max_hits), always_ready=True))
        One per frame, in order.
    table_w : In(stream.Signature(write_layout(index_bits, tag_bits)))
        Pattern table writes into the shadow bank (the SECURITY block's MATCHER_WRITE).
    commit : In(1)
        Pulse: the shadow bank becomes active between frames (MATCHER_COMMIT).
    commit_pending, active_bank : Out(1)
    events : Out(data.StructLayout({counter.value: 1 ...}))
        One pulse per event of the SECMATCH block's counters (:data:`MATCHER_COUNTERS`),
        with the result: ``matcher_frames`` (a frame with a payload inspected), ``matcher_punts``,
        ``matcher_overflows`` (more hits than slots), ``matcher_too_long``.
    """

    #: ``result.valid`` rises this many cycles plus one per beat of the frame after the cycle its
    #: record comes in, when the frame does not wait behind others: the record queue, the bounds
    #: (six registers), the job queue (a BeatFifo: five), the replay (one a beat), a register
    #: slice, the matcher (11 after the last beat) and the result register. Measured in
    #: simulation (the test checks it).
    REPLAY_LATENCY = 27

    def __init__(self, config: NicConfig, *, index_bits: int = 11, tag_bits: int | None = None, max_hits: int = 4,
                 fifo_beats: int | None = None):
        self.config = config
        self.index_bits, self.tag_bits, self.max_hits, self.fifo_beats = index_bits, tag_bits, max_hits, fifo_beats
        self.data_width = w = config.data_width
        lanes = w // 8
        self.max_frame_beats = -(-config.max_frame // lanes)
        if fifo_beats is None:
            fifo_beats = _pow2(2 * self.max_frame_beats + RECORD_DELAY_MAX + _REPLAY_DELAY + 8)
        if not isinstance(fifo_beats, int) or fifo_beats < 16 or fifo_beats & (fifo_beats - 1):
            raise ValueError(f"fifo_beats must be a power of two of at least 16, not {fifo_beats!r}")
        self.fifo_beats = fifo_beats
        # Frames waiting for replay: those that arrived while the frame ahead of them waited for
        # its record and was replayed (a whole FIFO at most), at one per FRAME_SPACING cycles.
        self.job_depth = _pow2(fifo_beats // FRAME_SPACING + _PENDING_FRAMES)
        self.matcher = Matcher(w, index_bits=index_bits, tag_bits=tag_bits, max_hits=max_hits)
        self.index_bits, self.tag_bits, self.max_hits = index_bits, self.matcher.tag_bits, max_hits
        super().__init__({
            "beat": In(tap_signature(w)),
            "parsed": In(stream.Signature(make_parsed_layout(config.port_bits), always_ready=True)),
            "result": Out(stream.Signature(payload_result_layout(index_bits, max_hits), always_ready=True)),
            "table_w": In(stream.Signature(write_layout(index_bits, self.tag_bits))),
            "commit": In(1),
            "commit_pending": Out(1),
            "active_bank": Out(1),
            "events": Out(data.StructLayout({c.value: 1 for c in MATCHER_COUNTERS})),
        })

    def __repr__(self):
        return (f"PayloadStage(data_width={self.data_width}, index_bits={self.index_bits}, "
                f"tag_bits={self.tag_bits}, max_hits={self.max_hits}, fifo_beats={self.fifo_beats})")

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        # The FIFO holds its RAM's depth plus the words of its output queue: a frame can have that many.
        count_bits = (self.fifo_beats + BeatFifo.QUEUE).bit_length()
        m.submodules.matcher = mx = self.matcher
        m.submodules.beats = beats = BeatFifo(self.data_width, self.fifo_beats)
        info_lay, rec_lay, job_lay = _info_layout(count_bits), _record_layout(), _job_layout(count_bits)
        # Small queues as OutputQueues (SyncFIFOBuffered's interface): the level logic of a
        # SyncFIFOBuffered was the critical path out of context (149.6 MHz).
        m.submodules.infos = infos = OutputQueue(width=info_lay.size, depth=_PENDING_FRAMES)
        m.submodules.records = records = OutputQueue(width=rec_lay.size, depth=_PENDING_FRAMES)
        m.submodules.jobs = jobs = BeatFifo(job_lay.size, self.job_depth)
        # Per frame inside the matcher: it holds at most its result FIFO's depth of frames.
        m.submodules.flags = flags = OutputQueue(width=3, depth=_FLAGS_DEPTH)

        # --- management: straight to the matcher ---------------------------------------------------
        wiring.connect(m, wiring.flipped(self.table_w), mx.table_w)
        m.d.comb += [mx.commit.eq(self.commit), self.commit_pending.eq(mx.commit_pending),
                     self.active_bank.eq(mx.active_bank)]

        # --- tap: beats into the FIFO, the length bytes kept, a frame's info at its last beat --------
        tap = self.beat
        written = Signal(count_bits)        # index of this frame's last beat in the FIFO (if any_written)
        any_written = Signal()
        dropping = Signal()                 # a beat of this frame found the FIFO full: no more writes
        beat_limit = LENGTH_BYTES.stop // lanes + 1
        beat_no = Signal(range(beat_limit + 1))     # beat index in the frame, saturating past the length bytes
        write = Signal()
        m.d.comb += write.eq(tap.valid & ~dropping & beats.w_rdy)
        m.d.comb += [beats.w_data.eq(tap.tdata), beats.w_en.eq(write)]
        kept = [Signal(8, name=f"length_byte_{p}") for p in LENGTH_BYTES]
        kept_now = []
        for p, reg in zip(LENGTH_BYTES, kept):
            here = tap.valid & (beat_no == p // lanes)
            byte = tap.tdata[8 * (p % lanes):8 * (p % lanes) + 8]
            with m.If(here):
                m.d.sync += reg.eq(byte)
            kept_now.append(Mux(here, byte, reg))
        with m.If(tap.valid):
            with m.If(tap.tlast):
                m.d.sync += [written.eq(0), any_written.eq(0), dropping.eq(0), beat_no.eq(0)]
            with m.Else():
                m.d.sync += dropping.eq(~write)
                with m.If(write):
                    m.d.sync += [written.eq(written + any_written), any_written.eq(1)]
                with m.If(beat_no != beat_limit):
                    m.d.sync += beat_no.eq(beat_no + 1)
        info = Signal(info_lay)
        m.d.comb += [
            info.last_index.eq(Mux(any_written & write, written + 1, written)),
            info.empty.eq(~any_written & ~write),
            info.too_long.eq(~write),
            info.length_bytes.eq(Cat(*kept_now)),
            infos.w_data.eq(info), infos.w_en.eq(tap.valid & tap.tlast),
        ]

        # --- records: the fields the bounds need -------------------------------------------------
        p = self.parsed.payload
        rec = Signal(rec_lay)
        meta = p.meta
        is_ip = (meta.l3_type == L3Type.IPV4) | (meta.l3_type == L3Type.IPV6)
        m.d.comb += [
            rec.has_payload.eq(meta.has_payload_offset & is_ip & ~meta.malformed.any() & ~p.rx_error),
            rec.l3_type.eq(meta.l3_type), rec.l3_offset.eq(meta.l3_offset),
            rec.payload_offset.eq(meta.payload_offset),
            records.w_data.eq(rec), records.w_en.eq(self.parsed.valid),
        ]

        # --- bounds: a frame's info and its record, one short step per register ------------------
        # (Frames come at most one per FRAME_SPACING cycles, so latency here costs no throughput.)
        go = Signal()
        m.d.comb += [go.eq(infos.r_rdy & records.r_rdy), infos.r_en.eq(go), records.r_en.eq(go)]

        def delay(value, n, name):
            for k in range(n):
                reg = Signal(value.shape(), name=f"{name}_d{k + 1}")
                m.d.sync += reg.eq(value)
                value = reg
            return value

        # Levels: `go` in cycle 0; Bk's registers hold the frame in cycle k + 1.
        # B0: the queue heads into registers.
        info0, rec0 = Signal(info_lay), Signal(rec_lay)
        m.d.sync += [info0.eq(infos.r_data), rec0.eq(records.r_data)]
        # B1: which L3 offset (one-hot), IPv4 or IPv6, and the header length to add to the field.
        hits, v4, base = Signal(len(L3_OFFSETS)), Signal(), Signal(META_OFFSET_BITS + 1)
        is_v4 = rec0.l3_type == L3Type.IPV4
        m.d.sync += [hits.eq(Cat(*(rec0.l3_offset == l3 for l3 in L3_OFFSETS))), v4.eq(is_v4),
                     base.eq(rec0.l3_offset + Mux(is_v4, 0, 40))]
        lb = delay(info0.length_bytes, 1, "length_bytes")

        def field(at):      # the big-endian 16-bit field at frame byte `at`
            i = at - LENGTH_BYTES.start
            return Cat(lb[8 * i + 8:8 * i + 16], lb[8 * i:8 * i + 8])

        # B2: the IP length field at that offset (an AND-OR over the one-hot offset).
        word, known = Signal(16), Signal()
        terms = [Mux(hits[k], Mux(v4, field(l3 + 2), field(l3 + 4)), 0) for k, l3 in enumerate(L3_OFFSETS)]
        m.d.sync += [word.eq(terms[0] | terms[1] | terms[2]), known.eq(hits.any())]
        # B3: the datagram's end. No clip to the frame is needed (payload_bounds clips): a datagram
        # longer than the frame is malformed (IP_LEN_MISMATCH, docs/parser.md), hence skipped.
        end = Signal(17)
        m.d.sync += end.eq(delay(base, 1, "base") + word)
        # B4: the payload length (negative: no payload, never for a well-formed frame).
        start_b3 = delay(rec0.payload_offset, 3, "payload_offset")
        diff = Signal(signed(18))
        m.d.sync += diff.eq(end - start_b3)
        # B5: the job. A frame that did not fit, or (never, by the parser's spec) an L3 offset the
        # stage cannot read, is not matched.
        info4 = delay(info0, 4, "info")
        known4 = delay(known, 2, "known")
        has_payload = delay(rec0.has_payload, 4, "has_payload") & ~diff[-1]
        unmatched = info4.too_long | ~known4
        job = Signal(job_lay)
        m.d.sync += [
            job.payload_offset.eq(delay(start_b3, 1, "payload_offset_b4")),
            job.payload_len.eq(Mux(has_payload & ~unmatched, diff, 0)),
            job.last_index.eq(info4.last_index), job.empty.eq(info4.empty),
            job.one_beat.eq(info4.empty | (info4.last_index == 0)),
            job.two_beats.eq(~info4.empty & (info4.last_index == 1)),
            job.skipped.eq(~has_payload), job.too_long.eq(info4.too_long),
            job.punt.eq(has_payload & unmatched),
        ]
        job_valid = delay(go, 6, "job_valid")
        m.d.comb += [jobs.w_data.eq(job), jobs.w_en.eq(job_valid)]

        # --- replay: each job's beats into the matcher, through a register slice -------------------
        # The slice's registered tvalid/tready keep the matcher's beat fan-out off this logic; the
        # frame's bounds ride in tuser with every beat (the matcher reads them with each beat).
        # Whether a beat is its frame's last comes from registers (`one_beat`/`two_beats` of the
        # job, `last_next`), not from a compare behind the job queue's output mux.
        m.submodules.slice = slc = RegisterSlice(self.data_width, META_OFFSET_BITS + MATCHER_OFFSET_BITS)
        cur = data.View(job_lay, jobs.r_data)
        started = Signal()                  # a beat of the head job has gone
        left = Signal(count_bits)           # beats of the head job still to go
        last_next = Signal()                # the head job's next beat is its last
        is_last = Mux(started, last_next, cur.one_beat)
        out = slc.s_axis
        fire = Signal()
        m.d.comb += [
            out.tvalid.eq(jobs.r_rdy & (cur.empty | beats.r_rdy)),
            out.tdata.eq(beats.r_data), out.tkeep.eq(Const(-1, lanes)), out.tlast.eq(is_last),
            out.tuser.eq(Cat(cur.payload_offset, cur.payload_len)),
            fire.eq(out.tvalid & out.tready),
            beats.r_en.eq(fire & ~cur.empty),
            jobs.r_en.eq(fire & is_last),
        ]
        with m.If(fire):
            with m.If(is_last):
                m.d.sync += started.eq(0)
            with m.Else():
                m.d.sync += [started.eq(1), left.eq(Mux(started, left - 1, cur.last_index)),
                             last_next.eq(Mux(started, left == 2, cur.two_beats))]
        # The frame's flags, in frame order, for its result (a cycle late: the queue's level logic
        # stays off the replay decision).
        m.d.sync += [flags.w_en.eq(fire & is_last), flags.w_data.eq(Cat(cur.skipped, cur.too_long, cur.punt))]
        sx = mx.s_axis
        m.d.comb += [
            sx.tvalid.eq(slc.m_axis.tvalid), sx.tdata.eq(slc.m_axis.tdata), sx.tkeep.eq(slc.m_axis.tkeep),
            sx.tlast.eq(slc.m_axis.tlast), sx.tuser.eq(0), slc.m_axis.tready.eq(sx.tready),
            mx.meta.valid.eq(slc.m_axis.tvalid),
            mx.meta.payload.payload_offset.eq(slc.m_axis.tuser[:META_OFFSET_BITS]),
            mx.meta.payload.payload_len.eq(slc.m_axis.tuser[META_OFFSET_BITS:]),
        ]

        # --- result: the matcher's, with the frame's flags -----------------------------------------
        res = Signal(self.result.payload.shape())
        mres = mx.result.payload
        skipped, too_long, punt = flags.r_data[0], flags.r_data[1], flags.r_data[2]
        m.d.comb += [mx.result.ready.eq(1), flags.r_en.eq(mx.result.valid)]
        m.d.comb += [res.hits.eq(mres.hits), res.n_hits.eq(mres.n_hits), res.overflow.eq(mres.overflow),
                     res.punt.eq(mres.punt | punt), res.skipped.eq(skipped), res.too_long.eq(too_long)]
        ev = self.events
        m.d.sync += [self.result.valid.eq(mx.result.valid), self.result.payload.eq(res),
                     ev.matcher_frames.eq(mx.result.valid & ~skipped),
                     ev.matcher_punts.eq(mx.result.valid & res.punt),
                     ev.matcher_overflows.eq(mx.result.valid & res.overflow),
                     ev.matcher_too_long.eq(mx.result.valid & too_long)]
        return m


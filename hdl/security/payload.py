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

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import BeatFifo
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
                              "last_index": count_bits, "empty": 1, "skipped": 1, "too_long": 1, "punt": 1})


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
    dropped as oversize) no frame is ever too long.

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
        One pulse per event of the SECURITY block's matcher counters (:data:`MATCHER_COUNTERS`),
        with the result: ``matcher_frames`` (a frame with a payload inspected), ``matcher_punts``,
        ``matcher_overflows`` (more hits than slots), ``matcher_too_long``.
    """

    #: ``result.valid`` rises this many cycles plus one per beat of the frame after the cycle its
    #: record comes in, when the frame does not wait behind others: the record queue, the bounds
    #: (three registers), the job queue (a BeatFifo: five), the replay (one a beat), the matcher
    #: (11 after the last beat) and the result register. Measured in simulation (the test checks it).
    REPLAY_LATENCY = 23

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
        m.submodules.infos = infos = SyncFIFOBuffered(width=info_lay.size, depth=_PENDING_FRAMES)
        m.submodules.records = records = SyncFIFOBuffered(width=rec_lay.size, depth=_PENDING_FRAMES)
        m.submodules.jobs = jobs = BeatFifo(job_lay.size, self.job_depth)
        # Per frame inside the matcher: it holds at most its result FIFO's depth of frames.
        m.submodules.flags = flags = SyncFIFOBuffered(width=3, depth=_FLAGS_DEPTH)

        # --- management: straight to the matcher ---------------------------------------------------
        wiring.connect(m, wiring.flipped(self.table_w), mx.table_w)
        m.d.comb += [mx.commit.eq(self.commit), self.commit_pending.eq(mx.commit_pending),
                     self.active_bank.eq(mx.active_bank)]

        # --- tap: beats into the FIFO, the length bytes kept, a frame's info at its last beat --------
        tap = self.beat
        written = Signal(count_bits)        # beats of this frame in the FIFO so far
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

        # --- bounds: a frame's info and its record, pipelined (a frame per cycle) ---------------------
        go = Signal()
        m.d.comb += [go.eq(infos.r_rdy & records.r_rdy), infos.r_en.eq(go), records.r_en.eq(go)]
        b_info, b_rec = data.View(info_lay, infos.r_data), data.View(rec_lay, records.r_data)
        # B1: the length field at the record's L3 offset, the header length to add; then B2, B3 (the job).
        b1 = dict(valid=Signal(), info=Signal(info_lay), rec=Signal(rec_lay), word=Signal(16), base=Signal(13),
                  known_l3=Signal())
        m.d.sync += [b1["valid"].eq(go), b1["info"].eq(b_info), b1["rec"].eq(b_rec)]
        lb = b_info.length_bytes
        is_v4 = b_rec.l3_type == L3Type.IPV4

        def field(at):      # the big-endian 16-bit field at frame byte `at`
            i = at - LENGTH_BYTES.start
            return Cat(lb[8 * i + 8:8 * i + 16], lb[8 * i:8 * i + 8])

        word, known = Const(0, 16), Const(0)
        for l3 in L3_OFFSETS:
            hit = b_rec.l3_offset == l3
            word = Mux(hit, Mux(is_v4, field(l3 + 2), field(l3 + 4)), word)
            known = known | hit
        m.d.sync += [b1["word"].eq(word), b1["known_l3"].eq(known),
                     b1["base"].eq(b_rec.l3_offset + Mux(is_v4, 0, 40))]
        # B2: the datagram's end. No clip to the frame is needed (payload_bounds clips): a datagram
        # longer than the frame is malformed (IP_LEN_MISMATCH, docs/parser.md), hence skipped.
        b3 = dict(valid=Signal(), info=Signal(info_lay), rec=Signal(rec_lay), end=Signal(17), known_l3=Signal())
        m.d.sync += [b3[k].eq(b1[k]) for k in ("valid", "info", "rec", "known_l3")]
        m.d.sync += b3["end"].eq(b1["base"] + b1["word"])
        job = Signal(job_lay)
        start = b3["rec"].payload_offset
        has_payload = b3["rec"].has_payload & (start <= b3["end"])
        # A frame that did not fit, or (never, by the parser's spec) an L3 offset the stage cannot read.
        unmatched = b3["info"].too_long | ~b3["known_l3"]
        m.d.sync += [
            job.payload_offset.eq(start),
            job.payload_len.eq(Mux(has_payload & ~unmatched, b3["end"] - start, 0)),
            job.last_index.eq(b3["info"].last_index), job.empty.eq(b3["info"].empty),
            job.skipped.eq(~has_payload), job.too_long.eq(b3["info"].too_long),
            job.punt.eq(has_payload & unmatched),
        ]
        job_valid = Signal()
        m.d.sync += job_valid.eq(b3["valid"])
        m.d.comb += [jobs.w_data.eq(job), jobs.w_en.eq(job_valid)]

        # --- replay: each job's beats into the matcher ---------------------------------------------
        cur = data.View(job_lay, jobs.r_data)
        count = Signal(count_bits)
        is_last = cur.empty | (count == cur.last_index)
        sx = mx.s_axis
        fire = Signal()
        m.d.comb += [
            mx.meta.valid.eq(jobs.r_rdy),
            mx.meta.payload.payload_offset.eq(cur.payload_offset),
            mx.meta.payload.payload_len.eq(cur.payload_len),
            sx.tvalid.eq(jobs.r_rdy & (cur.empty | beats.r_rdy)),
            sx.tdata.eq(beats.r_data), sx.tkeep.eq(Const(-1, lanes)), sx.tlast.eq(is_last), sx.tuser.eq(0),
            fire.eq(sx.tvalid & sx.tready),
            beats.r_en.eq(fire & ~cur.empty),
            jobs.r_en.eq(fire & is_last),
            flags.w_en.eq(fire & is_last), flags.w_data.eq(Cat(cur.skipped, cur.too_long, cur.punt)),
        ]
        with m.If(fire):
            m.d.sync += count.eq(Mux(is_last, 0, count + 1))

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


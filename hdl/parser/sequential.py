"""Sequential header parser: the header window in block RAM, walked by a small multi-cycle FSM.

Same contract as :class:`hdl.parser.pipelined.Parser` (docs/parser.md, every field and malformed rule of
:class:`~hdl.packet.meta.PacketMeta`) at a fraction of the area, for small FPGAs (iCE40UP5K). It parses
one frame in 2 to 16 cycles instead of one per cycle, and applies backpressure through ``space``
when frames come faster than that.

Refs: IEEE 802.3-2018 3.1.1, IEEE 802.1Q-2018 9.6, RFC 826, RFC 791, RFC 8200, RFC 9293,
RFC 768, RFC 792, RFC 4443.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import SyncRam
from hdl.lib.stream import AXIStreamSignature, keep_count
from hdl.packet.layouts import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_QINQ,
    ETH_VLAN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_EXT_FRAGMENT,
    IPV6_EXT_HEADERS,
)
from hdl.packet.meta import FRAME_LEN_BITS, OFFSET_BITS, L3Type, MalformedReason, PacketMeta, make_parsed_layout

__all__ = ["SequentialParser", "MAX_FRAME_CYCLES"]

#: Internal frame length width: the beat counter saturates two beats short of 2**17 bytes, so a
#: length always fits, and above 2**17 - 128 bytes every length check of docs/parser.md already
#: has its true outcome (the longest length it compares with is an IPv6 packet, 65535 + 40 + 22).
_LEN_BITS = 17
_FRAME_LEN_MAX = (1 << FRAME_LEN_BITS) - 1
#: Bytes returned by one window read (four 16-bit halfwords).
_READ_BYTES = 8
#: Most cycles the FSM spends on one frame: START, Ethernet (2), two VLAN tags (2), IPv6 (5), two
#: extension headers (2 each), the L4 header (1), TCP data offset (1).
MAX_FRAME_CYCLES = 16

def _lt_const(x, c):
    """``x < c`` for an unsigned value ``x`` and an integer ``c``, written as AND/OR logic.

    Yosys maps a comparison with a constant to a carry chain as wide as ``x`` (an 18-bit
    ``x < 14`` is 16 SB_CARRY cells on iCE40, each a logic cell); as logic it is a few LUTs, and
    the zero test of the high bits is shared by every comparison of the same value.
    """
    x = Value.cast(x)
    if c <= 0:
        return Const(0)
    if c >= 1 << len(x):
        return Const(1)
    k = (c - 1).bit_length()                 # x < c needs x[k:] == 0
    terms, eq = [], Const(1)                 # eq: x[i + 1:k] == c[i + 1:k]
    for i in reversed(range(k)):
        if (c >> i) & 1:
            terms.append(eq & ~x[i])
            eq = eq & x[i]
        else:
            eq = eq & ~x[i]
    if c == 1 << k:                          # x[:k] < c always
        terms = [Const(1)]
    return ~x[k:].any() & Cat(*terms).any()


class SequentialParser(wiring.Component):
    """Header parser for small FPGAs: window in block RAM, one 8-byte read per cycle by an FSM.

    Architecture
    ------------
    *Capture.* While a frame passes (``m_axis`` is ``s_axis``, untouched, as in
    :class:`~hdl.parser.pipelined.Parser`), its first ``header_window`` bytes are written, one beat per
    cycle, into one of ``slots`` frame slots of a block RAM window; the frame length, ingress port
    and ``rx_error`` go into a small per-slot info memory at the last beat. Both are
    :class:`~hdl.lib.ram.SyncRam`: on iCE40 SB_RAM40_4K blocks whose own read register is the read
    data, at no cost in logic cells. The window is split into W/16 halfword lanes (one RAM each,
    16 bits wide: the SB_RAM40_4K's native shape), so 8 consecutive bytes can be read in one cycle:
    each lane gets its own row address and a rotation puts the four halfwords in order. Every read
    starts at an offset of 2 modulo 4 (L3 starts at 14/18/22, IPv4 options and IPv6 extension
    headers are multiples of 4 and 8 bytes, and Ethernet is read from byte -2), so no
    byte-granular shifter is needed and the rotation takes only W/32 values (a 2:1 mux at W=64).

    *Walk.* A multi-cycle FSM parses the oldest complete slot. Each cycle it consumes the 8 bytes
    it read in the previous cycle and issues the next read. The read offset depends only on the
    state and on registers, never on the bytes just read (that path, through the lane rotation
    and the checks into the RAM address, missed 24 MHz on the iCE40UP5K); where the next offset
    does come from the data (after two VLAN tags, after an IPv6 extension header) a cycle
    without data consumption issues it. The FSM follows docs/parser.md step by step, so a field
    is written only when the spec sets it and every "stop" is simply the end of the walk; the
    output record is the FSM's working register.

    Why block RAM and an FSM rather than extracting fields on the fly as bytes stream past: the
    on-the-fly extractor needs a byte-lane mux per field for every data width, and at W=512 the
    whole window arrives in two beats, so it degenerates into the combinational parser again.
    The window in block RAM costs no logic cells and the FSM is independent of W; the price is
    throughput, which stays at line rate for the common small frames at W=64 (below).

    Throughput
    ----------
    Cycles per frame (FSM occupancy, the record's valid cycle overlaps the next frame's START):

    ===================================  ======
    frame                                cycles
    ===================================  ======
    shorter than 14 bytes                2
    not ARP/IPv4/IPv6, L2 truncation     3
    ARP                                  6
    IPv4 + UDP, ICMP or another protocol 7
    IPv4 + TCP                           8
    IPv6 + UDP/ICMPv6                    9
    IPv6 + TCP                           10
    one / two VLAN tags                  +1 / +2
    each IPv6 extension header           +2
    ===================================  ======

    (at most :data:`MAX_FRAME_CYCLES` = 16). A frame of ``B`` beats keeps the stream at one beat
    per cycle when its parse takes at most ``B`` cycles on average: at W=64 a minimum 64-byte
    frame is 8 beats, so back-to-back minimum IPv4 frames run at line rate and minimum IPv6/TCP
    frames at 8/10 of it; at W=512 a 64-byte frame is one beat and the parser is the bottleneck
    (one frame per 2 to 16 cycles). ``slots`` frames can be buffered, which absorbs bursts.

    Flow control: ``space`` follows the contract of :attr:`hdl.datapath.buffer.PacketBuffer.space`: high
    in cycle t, one beat may arrive in cycle t + 1 (the producer is one register upstream). It
    only goes low between frames, when every slot is taken; inside a frame it stays high.
    Frames are never lost or reordered as long as the producer honours it. ``s_axis.tready``
    is ``m_axis.tready``, as in the pipelined parser.

    Latency: a record comes out at most :attr:`latency_bound` cycles after its frame's last beat
    (``MAX_FRAME_CYCLES`` for the frame and each of up to ``slots - 1`` frames ahead of it, plus 3).

    Parameters
    ----------
    config : :class:`~hdl.config.NicConfig`
        Data width, header window, maximum frame and which ports are physical.
    slots : int
        Frames the window RAM holds (a power of two, at least 2): one being parsed, the others
        captured or being captured.

    Members
    -------
    s_axis : ``In(AXIStreamSignature(W, user_width=1 + port_bits))``
        Frames in. ``tuser`` bit 0 is ``rx_error`` (last beat), bits ``1..`` the ingress port.
    m_axis : ``Out(AXIStreamSignature(W, user_width=1 + port_bits))``
        The same frames, unchanged.
    meta : ``Out(stream.Signature(make_parsed_layout(port_bits), always_ready=True))``
        One record per frame, in frame order; ``valid`` is a one-cycle pulse.
    space : ``Out(1)``
        Flow control towards the producer (see above).
    """

    def __init__(self, config: NicConfig, *, slots: int = 4):
        if not isinstance(config, NicConfig):
            raise TypeError(f"SequentialParser config must be a NicConfig, not {config!r}")
        if slots < 2 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two of at least 2, not {slots!r}")
        self._config = config
        self._slots = slots
        user_width = 1 + config.port_bits
        super().__init__({
            "s_axis": In(AXIStreamSignature(config.data_width, user_width=user_width)),
            "m_axis": Out(AXIStreamSignature(config.data_width, user_width=user_width)),
            "meta": Out(stream.Signature(make_parsed_layout(config.port_bits), always_ready=True)),
            "space": Out(1),
        })

    @property
    def config(self) -> NicConfig:
        return self._config

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def latency_bound(self) -> int:
        """Most cycles from a frame's last beat transfer to its ``meta.valid``."""
        return MAX_FRAME_CYCLES * self._slots + 3

    def __repr__(self):
        # getattr: a constructor that raised leaves no attributes, and Amaranth's unused-elaboratable
        # warning still calls repr.
        return f"SequentialParser({getattr(self, '_config', None)!r}, slots={getattr(self, '_slots', None)})"

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        bpb = cfg.bytes_per_beat
        window = cfg.header_window
        port_bits = cfg.port_bits
        s, o = self.s_axis, self.m_axis
        MR = MalformedReason

        # Pass-through: the parser only watches transfers.
        m.d.comb += [
            o.tdata.eq(s.tdata), o.tkeep.eq(s.tkeep), o.tlast.eq(s.tlast), o.tuser.eq(s.tuser),
            o.tvalid.eq(s.tvalid), s.tready.eq(o.tready),
        ]
        xfer = s.tvalid & s.tready

        # ---- Window RAM: one 16-bit lane per halfword of a beat, `slots` frames deep ---------
        n_lanes = bpb // 2
        lane_bits = (n_lanes - 1).bit_length()
        rows = -(-window // bpb)
        row_bits = max(1, (rows - 1).bit_length())
        slot_bits = (self._slots - 1).bit_length()
        lanes = []
        for i in range(n_lanes):
            ram = SyncRam(16, self._slots << row_bits)
            m.submodules[f"window_{i}"] = ram
            lanes.append(ram)

        # ---- Capture --------------------------------------------------------------------------
        in_frame = Signal()
        beat_max = (1 << _LEN_BITS) // bpb - 2            # saturate (see _LEN_BITS)
        beat = Signal(range(beat_max + 1))
        wslot = Signal(slot_bits)
        first = xfer & ~in_frame
        last = xfer & s.tlast
        for i, ram in enumerate(lanes):
            m.d.comb += [ram.w_addr.eq(Cat(beat[:row_bits], wslot)), ram.w_data.eq(s.tdata[16 * i:16 * (i + 1)]),
                         ram.w_en.eq(xfer & _lt_const(beat, rows))]
        with m.If(xfer):
            m.d.sync += in_frame.eq(~s.tlast)
            with m.If(s.tlast):
                m.d.sync += [beat.eq(0), wslot.eq(wslot + 1)]
            with m.Elif(beat != beat_max):
                m.d.sync += beat.eq(beat + 1)

        # Per-slot info: length, ingress port, rx_error, written with the last beat.
        # beat * bpb + kept, kept in 1..bpb: only the top bit of `kept` (bpb) carries into `beat`.
        length = Signal(_LEN_BITS)
        kept = keep_count(s.tkeep, bpb)
        shift = bpb.bit_length() - 1
        m.d.comb += length.eq(Cat(kept[:shift], beat + kept[shift]))
        info_layout_bits = _LEN_BITS + port_bits + 1
        m.submodules.info = info = SyncRam(info_layout_bits, self._slots)
        info_data = info.r_data
        m.d.comb += [info.w_addr.eq(wslot), info.w_en.eq(last), info.r_en.eq(1),
                     info.w_data.eq(Cat(length, s.tuser[1:1 + port_bits], s.tuser[0]))]

        # Slot accounting. `used`: slots taken (being captured, waiting or being parsed);
        # `ready`: complete frames the FSM has not started (counted a cycle after the last beat,
        # when the info RAM's registered read port shows the new entry).
        # `release` is decided late in the cycle (it depends on the bytes just read), so it only
        # reaches registers: `used` drops a cycle late (`space` is then conservative for a cycle),
        # and the slot pointers move at START, which depends on registers only.
        used = Signal(range(self._slots + 1))
        ready = Signal(range(self._slots + 1))
        release = Signal()          # the FSM is done with its slot (this cycle)
        release_q = Signal()
        start = Signal()            # the FSM takes the slot at `rslot` (this cycle)
        rslot = Signal(slot_bits)   # next slot to parse
        cur = Signal(slot_bits, reset_less=True)   # slot being parsed
        last_q = Signal()
        m.d.sync += [last_q.eq(last), release_q.eq(release)]
        used_next = Signal.like(used)
        m.d.comb += used_next.eq(used + first - release_q)
        m.d.sync += [used.eq(used_next), ready.eq(ready + last_q - start)]
        with m.If(start):
            m.d.sync += [rslot.eq(rslot + 1), cur.eq(rslot)]
        # A beat in t + 1 continues the frame in capture, or starts one that needs a free slot.
        in_frame_next = Mux(xfer, ~s.tlast, in_frame)
        m.d.comb += self.space.eq(in_frame_next | (used_next < self._slots))
        # The info entry the next START needs, read one cycle ahead. A frame's entry is written at
        # its last beat (t0) and `ready` counts it at t0 + 1, so START (t0 + 2 at the earliest)
        # sees data read at t0 + 1 or later, after the write.
        m.d.comb += info.r_addr.eq(rslot + start)

        # ---- Window reads: 8 bytes at a byte offset 2 modulo 4, data the next cycle -----------
        # Every offset the walk reads at is 2 modulo 4 (L3 starts at 14, 18 or 22 and every header
        # length after it is a multiple of 4; Ethernet is read from byte -2, wrapping inside the
        # slot). A read then starts at an odd halfword h = 2a + 1, whose lane rotation h mod lanes
        # = 2s + 1 takes only lanes / 2 values: at W=64 a 2:1 mux per data bit instead of 4:1, one
        # LUT level less on the read-data path (the parser's critical path) and about 64 LUTs less.
        sel_bits = lane_bits - 1
        raddr = Signal(row_bits + sel_bits)      # a, within the slot; driven by the FSM (`issue`)
        sel = raddr[:sel_bits] if sel_bits else Const(0, 1)    # s
        q = raddr[sel_bits:]                     # row of h: h >> lane_bits = a >> sel_bits
        # Lane b holds halfword h + ((b - h) mod lanes): row q, or q + 1 for the lanes b < 2s + 1.
        # A row past the slot wraps inside it (bytes past the window are never used). The slot read
        # is always a complete one (`used` counts it until release), never the slot being written,
        # so read/write collisions only happen on idle reads whose data is ignored.
        rd_slot = Signal(slot_bits)              # `cur`, or `rslot` in START
        m.d.comb += rd_slot.eq(cur)
        for b, ram in enumerate(lanes):
            c = (b + 1) // 2                     # b < 2s + 1  <=>  s >= c
            step = Const(1) if c == 0 else Const(0) if c >= n_lanes // 2 else (sel >= c)
            row = (q + step)[:row_bits]
            m.d.comb += [ram.r_addr.eq(Cat(row, rd_slot)), ram.r_en.eq(1)]
        words = [ram.r_data for ram in lanes]
        n_words = _READ_BYTES // 2
        d = Signal(8 * _READ_BYTES)
        rot = Signal(max(1, sel_bits), reset_less=True)   # s of the read, for its data next cycle
        m.d.sync += rot.eq(sel)
        for j in range(n_words):
            choices = [words[(2 * k + 1 + j) % n_lanes] for k in range(n_lanes // 2)]
            m.d.comb += d[16 * j:16 * (j + 1)].eq(Array(choices)[rot])

        def byte(i):
            return d[8 * i:8 * (i + 1)]

        def be(i, n):
            """``n`` bytes at ``i`` of the read word as a big-endian (network order) value."""
            return Cat(*(byte(j) for j in reversed(range(i, i + n))))

        # One adder for every read address: a register (`l3` or `off`, both 2 modulo 4) or 0,
        # plus a constant, in 4-byte units.
        rd_base = Signal.like(raddr)
        rd_add = Signal.like(raddr)
        m.d.comb += raddr.eq(rd_base + rd_add)

        def issue(base, add=0):
            """Read the 8 bytes at byte offset ``base + add`` (2 modulo 4, see above): ``base`` is
            ``l3``, ``off`` or None (0), ``add`` a constant (-2 wraps inside the slot)."""
            assert add % 4 == (0 if base is not None else 2), add
            if base is not None:
                m.d.comb += rd_base.eq(base[2:])
            m.d.comb += rd_add.eq((add >> 2) % (1 << len(raddr)))

        # ---- Walk state ----------------------------------------------------------------------
        # Everything but `valid` is loaded before it is used, so it has no reset: on iCE40 a
        # flip-flop's synchronous reset pin is then free for START's clear of the record, and
        # the record's ~550 bits load straight from the read word without a gating LUT each.
        meta = Signal(PacketMeta, reset_less=True)
        valid = Signal()
        port = Signal(port_bits, reset_less=True)
        rx_error = Signal(reset_less=True)
        frame_len = Signal(_LEN_BITS, reset_less=True)     # L
        l3 = meta.l3_offset[:5]                             # 14, 18 or 22
        # L - l3_offset, and 40 less for IPv6 (negative: the fixed header does not fit); the top
        # bit is the sign.
        avail = Signal(_LEN_BITS + 1, reset_less=True)
        off = Signal(OFFSET_BITS, reset_less=True)         # next header (IPv6 chain) or L4 offset
        rem = Signal(16, reset_less=True)                   # IP bytes from `off` to the IP packet's end
        nh = Signal(8, reset_less=True)                     # protocol / next header at `off`
        n_ext = Signal(2, reset_less=True)                  # IPv6 extension headers walked
        mismatch = Signal(reset_less=True)                  # IP length check failed (flagged later)
        ext_short = Signal(reset_less=True)                 # the extension header runs past the IP end

        m.d.sync += valid.eq(0)
        m.d.comb += [
            self.meta.valid.eq(valid),
            self.meta.payload.meta.eq(meta),
            self.meta.payload.in_port.eq(port),
            self.meta.payload.rx_error.eq(rx_error),
        ]
        phys_mask = Const(sum(1 << p for p in range(len(cfg.ports)) if cfg.is_physical(p)), 1 << port_bits)

        def flag(reason):
            m.d.sync += meta.malformed[reason].eq(1)

        def finish():
            m.d.sync += valid.eq(1)
            m.d.comb += release.eq(1)
            m.next = "START"

        def stop(reason=None, beyond_window=False):
            if reason is not None:
                flag(reason)
            if beyond_window:
                m.d.sync += meta.beyond_window.eq(1)
            finish()

        # The type fields sit at bytes 2 and 6 of a read word (frame bytes 12 in ETH_1's, 16 and
        # 20 in TAGS'). Each position is decoded once, and the next-state logic picks decoded flags
        # rather than the type bits: a shorter data-dependent path.
        types = {}
        for pos in (2, 6):
            t = be(pos, 2)
            types[pos] = {"type": t, "tpid": (t == ETH_VLAN) | (t == ETH_QINQ), "qinq": t == ETH_QINQ,
                          "v4": t == ETH_IPV4, "v6": t == ETH_IPV6, "arp": t == ETH_ARP}

        # Leaving L2 (from three places): ethertype and l3_offset known, dispatch on the type.
        # `avail` (L - l3_offset, and 40 less for IPv6) is set here for the L3 states' checks.
        l3_go = Signal()
        l3_type_in = Signal(16)
        l3_off_in = Signal(5)
        l3_sub_in = Signal(6)                    # l3_off_in, plus 40 for IPv6 (see `avail`)
        is_v4, is_v6, is_arp = Signal(), Signal(), Signal()

        def goto_l3(pos, offset, read_issued=True):
            """Dispatch on the type at byte ``pos`` to the L3 header at ``offset``; its first read
            was issued this cycle (or, with ``read_issued=False``, is issued by L3_READ next)."""
            f = types[pos]
            m.d.comb += [l3_go.eq(1), l3_type_in.eq(f["type"]), l3_off_in.eq(offset),
                         l3_sub_in.eq(Mux(f["v6"], offset + 40, offset)),
                         is_v4.eq(f["v4"]), is_v6.eq(f["v6"]), is_arp.eq(f["arp"])]
            with m.If(~(f["v4"] | f["v6"] | f["arp"])):
                finish()
            if not read_issued:
                with m.Else():
                    m.next = "L3_READ"
                return
            with m.Elif(f["v4"]):
                m.next = "IPV4_0"
            with m.Elif(f["v6"]):
                m.next = "IPV6_0"
            with m.Else():
                m.next = "ARP_0"

        def tag_fields(k, tci):
            """The priority and VLAN ID of tag ``k`` from its TCI."""
            m.d.sync += [getattr(meta, f"vlan{k}_pcp").eq(tci[13:16]), getattr(meta, f"vlan{k}_vid").eq(tci[:12])]

        def type_step(k, pos, tagged):
            """The type field at frame byte 12 + 4k (byte ``pos`` of the read word), after ``k``
            VLAN tags: a TPID starts tag ``k`` (``tagged`` continues with its TCI), anything else
            is the ethertype of L3 at 14 + 4k. One step per tag, shared by ETH_1 and TAGS."""
            f = types[pos]
            with m.If(f["tpid"]):
                with m.If(_lt_const(frame_len, 18 + 4 * k)):
                    stop(MR.TRUNC_L2)
                with m.Else():
                    m.d.sync += [meta.vlan_count.eq(k + 1), getattr(meta, f"vlan{k}_tpid_qinq").eq(f["qinq"])]
                    tagged()
            with m.Else():
                goto_l3(pos, 14 + 4 * k)

        # Arithmetic shared by IPV4_0 and IPV6_0 (one comparator, one subtractor, one adder),
        # driven by whichever of them is active; IPv6 needs no `ip_len + 40` because its `avail`
        # is 40 less.
        ip_len = Signal(16)                      # IPv4 total length / IPv6 payload length
        ip_longer = Signal()                     # ... claims more bytes than the frame holds
        ip_sub = Signal(6)                       # IPv4 header length (0 for IPv6)
        ip_rem = Signal(17)                      # IP bytes after the fixed/IPv4 header; top bit: sign
        hdr_len = Signal(6)                      # IPv4 / IPv6 header length
        hdr_end = Signal(OFFSET_BITS)            # the next header's offset
        m.d.comb += [ip_longer.eq(ip_len > avail[:-1]),     # (avail < 0: L3 is truncated anyway)
                     ip_rem.eq(ip_len - ip_sub), hdr_end.eq(l3 + hdr_len)]
        # Shared by L4 (UDP, ICMP: 8) and TCP (data offset): the payload offset.
        pay_len = Signal(6)
        pay_off = Signal(OFFSET_BITS)
        m.d.comb += pay_off.eq(off + pay_len)

        with m.FSM(name="walk"):
            # Every read address depends on the state and registers only, never on the bytes just
            # read: the read-data -> decision -> read-address path would not fit in a cycle at
            # 24 MHz on iCE40. Where the next offset comes from the data (two VLAN tags, IPv6
            # extension headers) a state without a read (L3_READ, EXT_READ) issues it. The comment
            # on each state names the bytes its data holds (read by the state before it).
            with m.State("START"):
                m.d.comb += rd_slot.eq(rslot)
                issue(None, -2)
                with m.If(ready != 0):
                    m.d.comb += start.eq(1)
                    inf = info_data
                    length_in = inf[:_LEN_BITS]
                    port_in = inf[_LEN_BITS:_LEN_BITS + port_bits]
                    m.d.sync += [
                        meta.eq(0), frame_len.eq(length_in), port.eq(port_in), rx_error.eq(inf[-1]),
                        n_ext.eq(0),
                        meta.frame_len.eq(Mux(length_in[FRAME_LEN_BITS:].any(), _FRAME_LEN_MAX,
                                              length_in[:FRAME_LEN_BITS])),
                        meta.malformed[MR.RUNT].eq(phys_mask.bit_select(port_in, 1) & _lt_const(length_in, 60)),
                        meta.malformed[MR.OVERSIZE].eq(~_lt_const(length_in, cfg.max_frame + 1)),
                    ]
                    m.next = "ETH_0"

            with m.State("ETH_0"):                         # bytes -2..5 (-2, -1: not the frame's)
                issue(None, 6)
                with m.If(_lt_const(frame_len, 14)):
                    stop(MR.TRUNC_L2)
                with m.Else():
                    m.d.sync += meta.eth_dst.eq(be(2, 6))
                    m.next = "ETH_1"

            with m.State("ETH_1"):                         # bytes 6..13
                issue(None, 14)                            # L3 if untagged, else the tag bytes
                m.d.sync += meta.eth_src.eq(be(0, 6))

                def first_tag():
                    m.next = "TAGS"
                type_step(0, 6, first_tag)

            with m.State("TAGS"):                          # bytes 14..21: TCI, type, TCI, type
                issue(None, 18)                            # L3 after one tag
                tag_fields(0, be(0, 2))

                def second_tag():
                    tag_fields(1, be(4, 2))
                    goto_l3(6, 22, read_issued=False)
                type_step(1, 2, second_tag)

            with m.State("L3_READ"):                       # no data: read L3 at l3 = 22
                issue(l3)
                with m.Switch(meta.l3_type):
                    with m.Case(L3Type.IPV4):
                        m.next = "IPV4_0"
                    with m.Case(L3Type.IPV6):
                        m.next = "IPV6_0"
                    with m.Default():
                        m.next = "ARP_0"

            with m.State("IPV4_0"):                        # l3 + 0..7
                issue(l3, 8)
                version, ihl = byte(0)[4:8], byte(0)[0:4]
                ihl4 = Cat(Const(0, 2), ihl)
                total = be(2, 2)
                flags_fo = be(6, 2)
                m.d.comb += [ip_len.eq(total), ip_sub.eq(ihl4), hdr_len.eq(ihl4)]
                with m.If(_lt_const(avail, 20)):
                    stop(MR.TRUNC_L3)
                with m.Elif(version != 4):
                    stop(MR.BAD_IP_VERSION)
                with m.Elif(ihl < 5):
                    stop(MR.BAD_IPV4_IHL)
                with m.Elif(_lt_const(avail, 64) & (avail[:6] < ihl4)):
                    stop(MR.TRUNC_L3)
                with m.Else():
                    m.d.sync += [
                        meta.has_l3.eq(1),
                        meta.ip_fragment.eq(flags_fo[13] | (flags_fo[:13] != 0)),
                        meta.ip_frag_offset.eq(flags_fo[:13]),
                        mismatch.eq(ip_longer | ip_rem[-1]),          # or total < ihl4
                        off.eq(hdr_end), rem.eq(ip_rem),
                    ]
                    m.next = "IPV4_1"

            with m.State("IPV4_1"):                        # l3 + 8..15
                issue(l3, 12)
                m.d.sync += [meta.ip_ttl.eq(byte(0)), nh.eq(byte(1)), meta.ip_src[:32].eq(be(4, 4))]
                m.next = "IPV4_2"

            with m.State("IPV4_2"):                        # l3 + 12..19
                issue(off)
                m.d.sync += [meta.ip_dst[:32].eq(be(4, 4)), meta.ip_proto.eq(nh)]
                with m.If(mismatch):
                    stop(MR.IP_LEN_MISMATCH)
                with m.Else():
                    m.next = "L4"

            with m.State("IPV6_0"):                        # l3 + 0..7
                issue(l3, 8)
                payload_length = be(4, 2)
                m.d.comb += [ip_len.eq(payload_length), hdr_len.eq(40)]    # avail is L - l3 - 40 here
                with m.If(avail[-1]):
                    stop(MR.TRUNC_L3)
                with m.Elif(byte(0)[4:8] != 6):
                    stop(MR.BAD_IP_VERSION)
                with m.Else():
                    m.d.sync += [
                        meta.has_l3.eq(1), meta.ip_ttl.eq(byte(7)), nh.eq(byte(6)),
                        mismatch.eq(ip_longer),
                        off.eq(hdr_end), rem.eq(ip_rem),
                    ]
                    m.next = "IPV6_1"

            for k, (field, lo) in enumerate([("ip_src", 64), ("ip_src", 0), ("ip_dst", 64), ("ip_dst", 0)]):
                with m.State(f"IPV6_{k + 1}"):             # l3 + 8 + 8k
                    m.d.sync += getattr(meta, field)[lo:lo + 64].eq(be(0, 8))
                    if k < 3:
                        issue(l3, 16 + 8 * k)
                        m.next = f"IPV6_{k + 2}"
                    else:
                        issue(off)
                        with m.If(mismatch):
                            stop(MR.IP_LEN_MISMATCH)
                        with m.Else():
                            m.next = "L4"

            with m.State("ARP_0"):                         # l3 + 0..7
                issue(l3, 12)
                ok = (be(0, 2) == 1) & (be(2, 2) == ETH_IPV4) & (byte(4) == 6) & (byte(5) == 4)
                with m.If(_lt_const(avail, 8)):
                    stop(MR.TRUNC_L3)
                with m.Elif(~ok):
                    finish()
                with m.Elif(_lt_const(avail, 28)):
                    stop(MR.TRUNC_L3)
                with m.Else():
                    m.d.sync += [meta.has_l3.eq(1), meta.ip_proto.eq(byte(7))]    # oper & 0xff
                    m.next = "ARP_1"

            with m.State("ARP_1"):                         # l3 + 12..19: spa at 14
                m.d.sync += meta.ip_src[:32].eq(be(2, 4))
                issue(l3, 20)
                m.next = "ARP_2"

            with m.State("ARP_2"):                         # l3 + 20..27: tpa at 24
                m.d.sync += meta.ip_dst[:32].eq(be(4, 4))
                finish()

            with m.State("L4"):                            # off + 0..7: extension or L4 header
                issue(off, 12)                            # TCP data offset and flags
                v6 = meta.l3_type == L3Type.IPV6
                is_ext = v6 & Cat(*(nh == e for e in IPV6_EXT_HEADERS)).any()
                with m.If(is_ext):
                    is_frag = nh == IPV6_EXT_FRAGMENT
                    # The header is 8 * (n + 1) bytes; both offsets stay 2 modulo 8, so only bits
                    # 3 and up change. x - ~n is x + n + 1 in one carry chain; the top bit of
                    # rem[3:] + ~n (rem[3:] - n - 1) is its sign: the header runs past the IP end.
                    n = Mux(is_frag, 0, byte(1))
                    rem_hi = Signal(len(rem) - 2)
                    m.d.comb += rem_hi.eq(rem[3:] + ~Cat(n, Const(0, len(rem_hi) - 8)))
                    with m.If(n_ext == 2):
                        stop(beyond_window=True)
                    with m.Elif(_lt_const(rem, 8)):
                        stop(MR.TRUNC_L3)
                    with m.Elif(~_lt_const(off, window - 8 + 1)):
                        stop(beyond_window=True)
                    with m.Else():
                        with m.If(is_frag):
                            m.d.sync += [meta.ip_fragment.eq(1), meta.ip_frag_offset.eq(be(2, 2)[3:])]
                        m.d.sync += [nh.eq(byte(0)), n_ext.eq(n_ext + 1),
                                     off[3:].eq(off[3:] - ~Cat(n, Const(0, len(off) - 11))),
                                     rem[3:].eq(rem_hi), ext_short.eq(rem_hi[-1])]
                        m.next = "EXT_READ"
                with m.Else():
                    is_tcp = nh == IPPROTO_TCP
                    is_udp = nh == IPPROTO_UDP
                    is_icmp = Mux(v6, nh == IPPROTO_ICMPV6, nh == IPPROTO_ICMP)
                    short = Mux(is_tcp, _lt_const(rem, 20), _lt_const(rem, 8))
                    past = ~Mux(is_tcp, _lt_const(off, window - 20 + 1), _lt_const(off, window - 8 + 1))
                    m.d.sync += [meta.ip_proto.eq(nh), meta.l4_offset.eq(off), meta.has_l4_offset.eq(1)]
                    with m.If(meta.ip_frag_offset != 0):
                        finish()
                    with m.Elif(~(is_tcp | is_udp | is_icmp)):
                        finish()
                    with m.Elif(short):
                        stop(MR.TRUNC_L4)
                    with m.Elif(past):
                        stop(beyond_window=True)
                    with m.Else():
                        m.d.sync += meta.has_l4.eq(1)
                        with m.If(is_icmp):
                            m.d.sync += [meta.icmp_type.eq(byte(0)), meta.icmp_code.eq(byte(1))]
                        with m.Else():
                            m.d.sync += [meta.sport.eq(be(0, 2)), meta.dport.eq(be(2, 2))]
                        with m.If(is_tcp):
                            m.next = "TCP"
                        with m.Else():
                            m.d.comb += pay_len.eq(8)
                            m.d.sync += [meta.payload_offset.eq(pay_off), meta.has_payload_offset.eq(1)]
                            finish()

            with m.State("EXT_READ"):                      # no data: read at the new `off`
                issue(off)
                with m.If(ext_short):
                    stop(MR.TRUNC_L3)
                with m.Else():
                    m.next = "L4"

            with m.State("TCP"):                           # off + 12..19
                data_offset = byte(0)[4:8]
                m.d.sync += meta.tcp_flags.eq(Cat(byte(1), byte(0)[0]))
                m.d.comb += pay_len.eq(Cat(Const(0, 2), data_offset))
                with m.If((data_offset < 5) | (_lt_const(rem, 64) & (rem[:6] < pay_len))):
                    stop(MR.BAD_TCP_OFFSET)
                with m.Else():
                    m.d.sync += [meta.payload_offset.eq(pay_off), meta.has_payload_offset.eq(1)]
                    finish()

        # The shared half of goto_l3: fields, registers and the first L3 read.
        with m.If(l3_go):
            m.d.sync += [
                meta.ethertype.eq(l3_type_in), meta.l3_offset.eq(l3_off_in),
                avail.eq(frame_len - l3_sub_in),
                meta.l3_type.eq(Mux(is_v4, L3Type.IPV4, Mux(is_v6, L3Type.IPV6,
                                                             Mux(is_arp, L3Type.ARP, L3Type.NONE)))),
            ]
        return m


"""Pipelined parser, capture: the header window, its ethertype / next-header flags and the frame
length, written as beats pass; stage S0 of the parser pipeline."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal

from hdl.lib.pipeline import Pipeline
from hdl.lib.stream import top_byte_count
from hdl.packet.layouts import ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_VLAN, IPV6_EXT_FRAGMENT, IPV6_EXT_HEADERS
from hdl.parser.window import LEN_BITS, byte_slice

__all__ = ["WindowCapture"]

#: Ethertype / TPID compares, made at the three positions an ethertype can sit (12, 16, 20).
ETHERTYPE_FLAGS = {
    "tpid": lambda v: (v == ETH_VLAN) | (v == ETH_QINQ),
    "qinq": lambda v: v == ETH_QINQ,
    "v4": lambda v: v == ETH_IPV4,
    "v6": lambda v: v == ETH_IPV6,
    "arp": lambda v: v == ETH_ARP,
}
#: IPv6 next-header compares, at the three candidate L3 offsets + 6 (20, 24, 28).
NEXT_HEADER_FLAGS = {
    "nhfrag": lambda v: v == IPV6_EXT_FRAGMENT,
    "nhext": lambda v: Cat(*(v == e for e in IPV6_EXT_HEADERS)).any(),
}


class WindowCapture:
    """Capture of each frame's first ``header_window`` bytes and length, and the parser's S0.

    Works on a registered copy of the snooped transfers (the stream passes by untouched). As a
    frame's beats pass, each beat is written into its slot of the window register; compares of
    the 16-bit fields at the three ethertype positions and of the IPv6 next header are made on
    the incoming beat and kept as flags beside the window. The cycle after the last beat is
    captured is stage 0: the window and flags hold the frame (until the next frame's last beat)
    and S0 registers the length, ingress port, ``rx_error`` and the physical-port flag.

    Members (pipeline values, with their stage)
    -------------------------------------------
    win : window bytes, little-endian (S0; the live register)
    flags : ``{(name, byte position): flag}`` of :data:`ETHERTYPE_FLAGS` and
        :data:`NEXT_HEADER_FLAGS` (S0)
    valid, length, in_port, rx_error, phys : S0 registers (``length`` saturates past 2**17 bytes)
    """

    def __init__(self, m, p: Pipeline, cfg, s_axis):
        self._build(m, p, cfg, s_axis)

    def __repr__(self):
        return "WindowCapture()"

    def _build(self, m, p, cfg, s):
        n_bytes = cfg.bytes_per_beat
        window = cfg.header_window
        port_bits = cfg.port_bits

        # Why a local copy of the transfer: the stream's source register also feeds the packet
        # buffer, across the die from the capture. Bytes past tkeep are zeroed on the way in, so
        # that each window byte takes its data straight from this register. The transfer is
        # registered as two flags, a beat that is not its frame's last (adv) and a last beat (fin):
        # one control level less in the capture.
        in_xfer = s.tvalid & s.tready
        adv = Signal(name="snoop_adv")
        fin = Signal(name="snoop_fin")
        snoop = {f: Signal.like(getattr(s, f), name=f"snoop_{f}", reset_less=True)
                 for f in ("tdata", "tkeep", "tuser")}
        keep_mask = Cat(*(s.tkeep[i].replicate(8) for i in range(n_bytes)))
        m.d.sync += [adv.eq(in_xfer & ~s.tlast), fin.eq(in_xfer & s.tlast),
                     snoop["tdata"].eq(s.tdata & keep_mask),
                     *(snoop[f].eq(getattr(s, f)) for f in ("tkeep", "tuser"))]
        # The top kept byte of the beat (one-hot), for the frame length. Why on the incoming
        # beat: the byte count's OR tree then starts from a register of its own, not from the
        # widely fanned-out snoop_tkeep.
        snoop_top = Signal(n_bytes, name="snoop_top", reset_less=True)
        m.d.sync += snoop_top.eq(s.tkeep & ~(s.tkeep >> 1))

        beat_max = (1 << (LEN_BITS - 1)) // n_bytes     # saturate once 2**17 bytes have passed
        beat = Signal(range(beat_max + 1))
        n_slots = (window + n_bytes - 1) // n_bytes
        # One-hot beat position inside the window (bit n_slots: past it), so that each window
        # slot's write enable is one register bit rather than a decoder on the beat counter.
        slot = Signal(n_slots + 1, init=1)
        m.d.sync += slot.eq(Mux(fin, 1, Mux(adv & ~slot[n_slots], slot << 1, slot)))

        # Each slot's write enable (write its beat, or clear it on a frame's first beat) is a
        # register set up a cycle ahead from the incoming handshake (why: decoded in the capture
        # cycle it missed timing): the transfer, and "slot k or slot 0 next" for a one-hot slot.
        def slot_we_next(k):
            if k == 0:
                return in_xfer & (fin | (~adv & slot[0]))
            return in_xfer & (fin | Mux(adv, slot[k - 1], slot[k] | slot[0]))

        slot_we = Signal(n_slots)
        m.d.sync += slot_we.eq(Cat(*(slot_we_next(k) for k in range(n_slots))))
        # Why the window keeps its reset: without one, Yosys maps the first-beat clear onto the
        # flip-flops' LSR pins, an enable fanned out over the whole window.
        win = Signal(8 * window)
        data_kept = snoop["tdata"]     # bytes past tkeep already zeroed
        flags = {}

        def capture_flags(positions, defs, n_field):
            """Register ``defs[name](field)`` for the ``n_field``-byte big-endian field at each
            position as the beat holding it passes.

            Why compare on the incoming beat: the capture cycle then only masks the compare with
            ``tkeep`` (bytes past it read as 0, as in the window); compare, mask and enable in
            one cycle missed timing. Like the window, the flags hold the frame's values in S0.
            """
            pre = {}
            for pos in positions:
                k, b = pos // n_bytes, pos % n_bytes
                kept = Cat(*(snoop["tkeep"][b + j] for j in range(n_field))).all()
                for fname, fn in defs.items():
                    if (fname, b) not in pre:
                        raw = Cat(*(byte_slice(s.tdata, b + j, 1) for j in reversed(range(n_field))))
                        pre[fname, b] = Signal(name=f"pre_{fname}_lane{b}", reset_less=True)
                        m.d.sync += pre[fname, b].eq(fn(raw))
                    # With a reset, like the window (why: the clears stay off the LSR pin).
                    f = Signal(name=f"cap_{fname}{pos}")
                    flags[fname, pos] = f
                    value = Mux(kept, pre[fname, b], fn(Const(0, 8 * n_field)))
                    with m.If(slot_we[k]):
                        m.d.sync += f.eq(Mux(slot[k], value, 0) if k else value)

        capture_flags((12, 16, 20), ETHERTYPE_FLAGS, 2)
        capture_flags((20, 24, 28), NEXT_HEADER_FLAGS, 1)
        with m.If(fin):
            m.d.sync += beat.eq(0)
        with m.Elif(adv & (beat != beat_max)):
            m.d.sync += beat.eq(beat + 1)
        # The window, a beat per slot. Beats past the first also clear their slot on a frame's
        # first beat, so a short frame never sees an older one's bytes. Why copies of each slot's
        # write enable, one per 128 flip-flops (up to four): one net over a 512-bit slot missed
        # timing. Yosys merges flip-flops of equal input and initial value, so the copies differ
        # in polarity (a clock enable inverts for free) and power-up value (reset-less: set every
        # cycle, and a write before the first frame is harmless).
        n_copies = max(1, min(4, 8 * n_bytes // 128))
        for k in range(n_slots):
            lo, hi = k * n_bytes, min((k + 1) * n_bytes, window)
            for c in range(n_copies):
                c_lo, c_hi = lo + (hi - lo) * c // n_copies, lo + (hi - lo) * (c + 1) // n_copies
                if c_lo == c_hi:
                    continue
                inverted = c & 1
                we = Signal(name=f"win_we{k}_{c}", reset_less=True, init=c >> 1)
                m.d.sync += we.eq(~slot_we_next(k) if inverted else slot_we_next(k))
                data = byte_slice(data_kept, c_lo - lo, c_hi - c_lo)
                with m.If(~we if inverted else we):
                    m.d.sync += byte_slice(win, c_lo, c_hi - c_lo).eq(Mux(slot[k], data, 0) if k else data)

        # ---- S0: frame length, port, rx_error; the window and flags are live registers -------
        self.win = p.add(win, 0)
        self.flags = {key: p.add(f, 0) for key, f in flags.items()}
        phys_mask = Const(sum(1 << q for q in range(len(cfg.ports)) if cfg.is_physical(q)), 1 << port_bits)
        in_port = snoop["tuser"][1:1 + port_bits]
        self.valid = p.reg(fin, 0, "s0_valid", reset_less=False)
        self.length = p.reg((beat << (n_bytes.bit_length() - 1)) + top_byte_count(snoop_top), 0, "s0_len",
                            LEN_BITS)
        self.in_port = p.reg(in_port, 0, "s0_in_port")
        self.rx_error = p.reg(snoop["tuser"][0], 0, "s0_rx_error")
        self.phys = p.reg(phys_mask.bit_select(in_port, 1), 0, "s0_phys")

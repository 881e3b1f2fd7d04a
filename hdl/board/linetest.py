"""Built-in line-rate tester: a frame generator per ingress port and a signature checker per egress port.

On a board without Ethernet MACs this is what drives the data path: the generator sends
back-to-back frames (length and gap from the LINETEST registers) into an ingress port, and the
checker folds every byte leaving an egress port into a 32-bit signature readable over the CSR bus.
It also keeps synthesis honest: with ingress tied off the whole data path would be optimised away.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import keep_copy
from hdl.mgmt.regs import Access, BlockType, Register
from hdl.packet.layouts import Ethernet, encode

__all__ = ["FrameGenerator", "CompactFrameGenerator", "SignatureChecker", "TEMPLATE_BYTES", "default_template",
           "port_mark", "port_template", "MAX_PORTS",
           "LFSR_TAPS", "DEFAULT_SEED", "LINETEST", "CONTROL", "FRAME_LEN", "GAP", "SEED", "SIGNATURE", "TEMPLATE"]

#: Galois LFSR feedback mask of the payload generator: x^32 + x^22 + x^2 + x + 1.
LFSR_TAPS = 0x80200003
#: The payload seed used when SEED is 0 (an LFSR stuck at 0 would send zeros), and SEED's reset value.
DEFAULT_SEED = 0xACE1

#: Bytes at the start of each generated frame that come from the TEMPLATE registers.
TEMPLATE_BYTES = 64


def default_template() -> bytes:
    """The TEMPLATE registers' reset value: Ethernet/IPv4/UDP headers of a well-formed frame.

    IPv4 total length 46 (a 60-byte frame); longer generated frames carry it as Ethernet padding,
    which the parser accepts, so every generated frame is forwarded.
    """
    from hdl.packet.layouts import IPv4, Udp
    eth = encode(Ethernet, {"dst": 0x02534E494301, "src": 0x02534E494300, "ethertype": 0x0800})
    ip = encode(IPv4, {"version": 4, "ihl": 5, "total_length": 46, "ttl": 64, "protocol": 17,
                       "src": 0xC0A80001, "dst": 0xC0A80002})
    udp = encode(Udp, {"sport": 1024, "dport": 9, "length": 26})
    raw = eth + ip + udp
    return raw + bytes(range(TEMPLATE_BYTES - len(raw)))



#: Generators and checkers: one per port of a NIC of up to eight ports.
MAX_PORTS = 8


def port_mark(port: int) -> int:
    """What generator ``port`` XORs into the template (as a little-endian integer over its bytes):
    the port number into the last byte of both MAC addresses.

    Why: a switch learns source addresses, so generators that all sent the same frame would move
    one MAC between ports at line rate (loop guard's signature of a loop). Marked, generator ``i``
    sends from ``MAC ^ i`` to ``MAC' ^ i``; with the reset template (destination = source ^ 1) that
    is the source address of generator ``i ^ 1``, its peer. A bump in the wire forwards every frame
    unchanged whatever its addresses.
    """
    if not 0 <= port < MAX_PORTS:
        raise ValueError(f"port must be 0..{MAX_PORTS - 1}, not {port!r}")
    return port << (8 * 5) | port << (8 * 11)


def port_template(template: bytes, port: int) -> bytes:
    """The first :data:`TEMPLATE_BYTES` bytes generator ``port`` sends for TEMPLATE ``template``."""
    template = bytes(template).ljust(TEMPLATE_BYTES, b"\0")[:TEMPLATE_BYTES]
    return (int.from_bytes(template, "little") ^ port_mark(port)).to_bytes(TEMPLATE_BYTES, "little")


def _template_word(i: int) -> int:
    return int.from_bytes(default_template()[4 * i:4 * i + 4], "little")


# The LINETEST register block: the generators' settings and the checkers' signatures.
CONTROL = Register("CONTROL", 0x10, Access.RW, "Bit 0: generators on (they take over the ingress ports).")
FRAME_LEN = Register("FRAME_LEN", 0x14, Access.RW, "Generated frame length in bytes (60..max_frame).", reset=64)
GAP = Register("GAP", 0x18, Access.RW, "Idle cycles between generated frames (bits 15:0; the rest is ignored).",
               reset=0)
SEED = Register("SEED", 0x1C, Access.RW, "Payload LFSR seed (nonzero).", reset=DEFAULT_SEED)
SIGNATURE = tuple(Register(f"SIGNATURE_{i}", 0x20 + 4 * i, Access.STATUS,
                           f"Egress port {i}: XOR-rotate signature of every byte sent since reset.")
                  for i in range(MAX_PORTS))
TEMPLATE = tuple(Register(f"TEMPLATE_{i}", 0x40 + 4 * i, Access.RW,
                          f"Generated frame bytes {4 * i}..{4 * i + 3} (first in bits 7:0); reset: an "
                          "Ethernet/IPv4/UDP header.", reset=_template_word(i)) for i in range(TEMPLATE_BYTES // 4))
LINETEST = BlockType(0x0040, 1, "LINETEST", "Built-in line-rate tester (board builds): a frame generator on "
                     "every ingress port and a signature checker on every egress port.",
                     (CONTROL, FRAME_LEN, GAP, SEED) + SIGNATURE + TEMPLATE)

class _FrameGeneratorInterface(wiring.Component):
    """Sends frames of ``frame_len`` bytes with ``gap`` idle cycles between them while ``enable``:
    the interface of :class:`FrameGenerator` and :class:`CompactFrameGenerator`.

    The first 64 bytes come from ``template`` (the LINETEST TEMPLATE registers, so the parser
    sees whatever headers the user programs); the rest is a 32-bit Galois LFSR
    (x^32 + x^22 + x^2 + x + 1), a different rotation in every 32-bit lane. Both implementations
    send the same frames with the same timing relative to ``enable`` as long as ``frame_len``,
    ``gap`` and ``seed`` do not change in the three cycles before a frame starts, nor
    ``template`` while a frame is going out. They share the frame/gap logic; each supplies the
    template beat, the registered settings and the template's advance.

    Parameters
    ----------
    data_width:
        W, a divisor of the 512-bit template.
    port:
        Ingress port index (for names only).

    Members
    -------
    enable, frame_len, gap, seed, template: In
    m_axis: Out(AXIStreamSignature(W, 1))
    busy: Out(1)  -- inside a frame
    """

    def __init__(self, data_width: int, port: int):
        self.data_width, self.port = data_width, port
        super().__init__({
            "enable": In(1), "frame_len": In(14), "gap": In(16), "seed": In(32),
            "template": In(8 * TEMPLATE_BYTES),
            "m_axis": Out(AXIStreamSignature(data_width, 1)), "busy": Out(1),
        })

    def __repr__(self):
        return f"{type(self).__name__}({self.data_width}, {self.port})"

    def _template_data(self, m, data, payload, template_beats):
        """Drive ``data`` (the beat going out) from the template or ``payload``; returns the
        template state that :meth:`_advance_template` moves."""
        raise NotImplementedError

    def _settings(self, m):
        """Register the settings: returns ``(frame_len, seed, gap, gap_zero, gap_one, enable)``."""
        raise NotImplementedError

    def _advance_template(self, m, state, in_frame, last, valid_out, last_out):
        """Move the template state to the next beat (restart it between frames)."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        w, bpb = self.data_width, self.data_width // 8
        out = self.m_axis

        lfsr = Signal(32, init=DEFAULT_SEED)
        beats_left = Signal(range(-(-16383 // bpb) + 1))
        last_keep = Signal(bpb)
        gap_left = Signal(16)
        in_frame = Signal()

        lanes = [Cat(lfsr[i % 32:], lfsr[:i % 32]) for i in range(0, w // 32 * 7, 7)]
        payload = Cat(*lanes)
        if TEMPLATE_BYTES % bpb:
            raise ValueError(f"the {TEMPLATE_BYTES}-byte template must be whole beats of {bpb} bytes")
        template_beats = TEMPLATE_BYTES // bpb
        data = Signal(w)
        template_state = self._template_data(m, data, payload, template_beats)
        last = Signal()                                  # the current beat is the frame's last
        # Why a kept copy of `last` for the outputs: shared, the end-of-frame decision crossed the die twice.
        last_out = keep_copy(last, name="last_out")
        # Why a kept copy of `in_frame` as tvalid: the same, for the frame/gap logic's enables.
        valid_out = keep_copy(in_frame, name="valid_out", reset_less=False)
        m.d.comb += [
            out.tdata.eq(data), out.tlast.eq(last_out), out.tuser.eq(0),
            out.tkeep.eq(Mux(last_out, last_keep, (1 << bpb) - 1)),
            out.tvalid.eq(valid_out), self.busy.eq(in_frame),
        ]

        frame_len, seed, gap, gap_zero, gap_one, enable = self._settings(m)
        n_beats = Signal.like(beats_left)
        single = Signal()                                # the frame is one beat
        tail = frame_len[:bpb.bit_length() - 1]          # bytes in the last beat, 0 meaning full
        keep = Signal(bpb)
        m.d.sync += [n_beats.eq((frame_len + (bpb - 1)) >> (bpb.bit_length() - 1)),
                     single.eq(frame_len <= bpb),
                     # Byte i is kept when the tail is full (0) or longer than i. Why a decode
                     # and not (1 << tail) - 1: that carry chain was shared with `single`'s.
                     keep.eq(Cat(*((tail == 0) | (tail > i) for i in range(bpb))))]

        self._advance_template(m, template_state, in_frame, last, valid_out, last_out)

        gap_wait = Signal()                              # gap_left != 0
        with m.If(~in_frame):
            with m.If(gap_wait):
                m.d.sync += [gap_left.eq(gap_left - 1), gap_wait.eq(gap_left != 1)]
            with m.Elif(enable):
                m.d.sync += [in_frame.eq(1), valid_out.eq(1), beats_left.eq(n_beats), last.eq(single),
                             last_out.eq(single), last_keep.eq(keep)]
            with m.Else():
                m.d.sync += lfsr.eq(seed)
        with m.Elif(out.tready):
            m.d.sync += [beats_left.eq(beats_left - 1), last.eq(beats_left == 2), last_out.eq(beats_left == 2),
                         lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ LFSR_TAPS, lfsr >> 1))]
            with m.If(last):
                with m.If(gap_zero & enable):   # next frame in the very next cycle
                    m.d.sync += [beats_left.eq(n_beats), last.eq(single), last_out.eq(single),
                                 last_keep.eq(keep)]
                with m.Else():
                    # The start cycle is idle too, so gap - 1 cycles wait here.
                    m.d.sync += [in_frame.eq(0), valid_out.eq(0), gap_left.eq(gap),
                                 gap_wait.eq(~gap_zero & ~gap_one)]
        return m


class FrameGenerator(_FrameGeneratorInterface):
    """The frame generator for speed: the template leaves through a per-generator shift register
    copied at each frame start, and the settings are registered twice (kept copies).
    Interface: :class:`_FrameGeneratorInterface`.
    """

    def _template_data(self, m, data, payload, template_beats):
        w = self.data_width
        # The template leaves through a shift register loaded at each frame start, so the output
        # is one 2:1 mux away from flip-flops: a mux on the beat index over a template held in
        # the CSR block (far away on the die) was a ULX3S critical path.
        shifter = Signal(8 * TEMPLATE_BYTES)
        in_template = Signal(template_beats)         # bit 0: the current beat is a template beat
        m.d.comb += data.eq(Mux(in_template[0], shifter[:w], payload))
        return shifter, in_template

    def _settings(self, m):
        # The settings come from the CSR block, far away on the die: they are registered twice
        # as they are (the placer can put one copy near the source and one here), then the
        # length arithmetic is registered too, so every decision below is made from flip-flops
        # and one or two LUTs.
        # Kept apart: every generator registers the same CSR settings, and Yosys merges equal
        # flip-flops across generators (the one left then feeds both ports across the die).
        in_len, in_seed, in_gap, in_enable = (
            keep_copy(x, name=f"cfg_{x.name}", reset_less=False)
            for x in (self.frame_len, self.seed, self.gap, self.enable))
        m.d.sync += [in_len.eq(self.frame_len), in_seed.eq(self.seed), in_gap.eq(self.gap),
                     in_enable.eq(self.enable)]
        frame_len = Signal(14)
        seed = Signal(32)
        gap = Signal(16)
        gap_zero, gap_one = Signal(), Signal()
        enable = Signal()
        # The seed's zero test (32 bits, three LUT levels) gets a cycle of its own, beside an
        # aligned copy of the seed: test and select in one cycle was a ULX3S critical path.
        seed_zero, seed_late = Signal(), Signal(32)
        m.d.sync += [seed_zero.eq(in_seed == 0), seed_late.eq(in_seed)]
        m.d.sync += [frame_len.eq(in_len), seed.eq(Mux(seed_zero, DEFAULT_SEED, seed_late)),
                     gap.eq(in_gap - 1), gap_zero.eq(in_gap == 0), gap_one.eq(in_gap == 1),
                     enable.eq(in_enable)]
        return frame_len, seed, gap, gap_zero, gap_one, enable

    def _advance_template(self, m, state, in_frame, last, valid_out, last_out):
        out, w, (shifter, in_template) = self.m_axis, self.data_width, state
        template_beats = len(in_template)
        # The template shifter reloads whenever no frame is out and at each last beat (the next
        # frame may start in the very next cycle), and shifts on every other beat. It reads
        # the output's copies of `in_frame` and `last`: with the frame/gap logic's own, Yosys
        # shared the enable's LUT between both and the placer put it among the shifter's 512
        # flip-flops, far from the frame/gap logic (ULX3S critical path, 2.5 ns each way).
        with m.If(~valid_out | (out.tready & last_out)):
            m.d.sync += [shifter.eq(self.template), in_template.eq((1 << template_beats) - 1)]
        with m.Elif(out.tready):
            m.d.sync += [shifter.eq(shifter >> w), in_template.eq(in_template >> 1)]


class CompactFrameGenerator(_FrameGeneratorInterface):
    """The frame generator for area: the current template beat is picked out of ``template`` by
    a mux on a small beat index rather than shifted out of a per-generator copy (it reads the
    template beat by beat), and the settings are registered once, not twice.
    Interface: :class:`_FrameGeneratorInterface`.
    """

    def _template_data(self, m, data, payload, template_beats):
        w = self.data_width
        # The current beat is picked straight out of `template` (fine at 24 MHz; FrameGenerator's
        # shifter is 512 flip-flops and 512 LUTs per generator). The beat index is
        # one-hot (bit k: template beat k, top bit: past the template, LFSR payload), so the
        # mux is an AND-OR, about 10% fewer iCE40 LUTs than a binary index's mux tree.
        beat = Signal(template_beats + 1, init=1)
        picked = payload & beat[-1].replicate(w)
        for k in range(template_beats):
            picked = picked | (self.template.word_select(k, w) & beat[k].replicate(w))
        m.d.comb += data.eq(picked)
        return beat

    def _settings(self, m):
        # The settings and the length arithmetic are registered once, straight from the inputs;
        # `enable` still goes through two registers, so frames start in the same cycle as in
        # FrameGenerator.
        in_enable = Signal(name="cfg_enable")
        m.d.sync += in_enable.eq(self.enable)
        frame_len, in_seed, in_gap = self.frame_len, self.seed, self.gap
        seed = Signal(32)
        gap = Signal(16)
        gap_zero, gap_one = Signal(), Signal()
        enable = Signal()
        m.d.sync += [seed.eq(Mux(in_seed == 0, DEFAULT_SEED, in_seed)),
                     gap.eq(in_gap - 1), gap_zero.eq(in_gap == 0), gap_one.eq(in_gap == 1),
                     enable.eq(in_enable)]
        return frame_len, seed, gap, gap_zero, gap_one, enable

    def _advance_template(self, m, state, in_frame, last, valid_out, last_out):
        out, beat = self.m_axis, state
        # The beat index restarts whenever no frame is out and at each last beat (like the
        # shifter's reload), and advances on the other beats up to the payload.
        with m.If(~in_frame | (out.tready & last)):
            m.d.sync += beat.eq(1)
        with m.Elif(out.tready & ~beat[-1]):
            m.d.sync += beat.eq(beat << 1)


class SignatureChecker(wiring.Component):
    """Folds every byte transferred on a snooped stream into a 32-bit signature.

    ``signature = rotl(signature, 1) ^ xor-fold(tdata masked by tkeep)`` per beat, so both
    the bytes and their order matter.

    Members
    -------
    tdata, tkeep, beat: In  -- the snooped stream and its transfer strobe
    value: Out(32)  -- the running signature
    """

    def __init__(self, data_width: int):
        self.data_width = data_width
        super().__init__({"tdata": In(data_width), "tkeep": In(data_width // 8), "beat": In(1),
                          "value": Out(32)})

    def elaborate(self, platform):
        m = Module()
        w = self.data_width
        masked = Cat(*(self.tdata[8 * i:8 * i + 8] & self.tkeep[i].replicate(8) for i in range(w // 8)))
        folded = Signal(32)
        m.d.comb += folded.eq(0)
        acc = Const(0, 32)
        for i in range(w // 32):
            acc = acc ^ masked[32 * i:32 * i + 32]
        m.d.comb += folded.eq(acc)
        # Registered once before the accumulator: the fold of a 512-bit beat is several LUT levels.
        folded_r, beat_r = Signal(32), Signal()
        m.d.sync += [folded_r.eq(folded), beat_r.eq(self.beat)]
        with m.If(beat_r):
            m.d.sync += self.value.eq(Cat(self.value[31], self.value[:31]) ^ folded_r)
        return m

"""Built-in line-rate tester: a frame generator per ingress port and a signature checker per egress port.

On a board without Ethernet MACs this is what drives the data path: the generator sends
back-to-back frames (length and gap from the LINETEST registers) into an ingress port, and the
checker folds every byte leaving an egress port into a 32-bit signature readable over the CSR bus.
It also keeps synthesis honest: with ingress tied off the whole data path would be optimised away.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import Ethernet, encode
from .stream import AXIStreamSignature

__all__ = ["FrameGenerator", "SignatureChecker", "TEMPLATE_BYTES", "default_template"]

#: Bytes at the start of each generated frame that come from the TEMPLATE registers.
TEMPLATE_BYTES = 64


def default_template() -> bytes:
    """The TEMPLATE registers' reset value: Ethernet/IPv4/UDP headers of a well-formed frame.

    IPv4 total length 46 (a 60-byte frame); longer generated frames carry it as Ethernet padding,
    which the parser accepts, so every generated frame is forwarded.
    """
    from .layouts import IPv4, Udp
    eth = encode(Ethernet, {"dst": 0x02534E494301, "src": 0x02534E494300, "ethertype": 0x0800})
    ip = encode(IPv4, {"version": 4, "ihl": 5, "total_length": 46, "ttl": 64, "protocol": 17,
                       "src": 0xC0A80001, "dst": 0xC0A80002})
    udp = encode(Udp, {"sport": 1024, "dport": 9, "length": 26})
    raw = eth + ip + udp
    return raw + bytes(range(TEMPLATE_BYTES - len(raw)))


class FrameGenerator(wiring.Component):
    """Sends frames of ``frame_len`` bytes with ``gap`` idle cycles between them while ``enable``.

    The first 64 bytes come from ``template`` (the LINETEST TEMPLATE registers, so the parser
    sees whatever headers the user programs); the rest is a 32-bit Galois LFSR
    (x^32 + x^22 + x^2 + x + 1), a different rotation in every 32-bit lane.

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

    def elaborate(self, platform):
        m = Module()
        w, bpb = self.data_width, self.data_width // 8
        out = self.m_axis

        lfsr = Signal(32, init=0xACE1)
        beat = Signal(range(-(-16383 // bpb) + 1))    # beat index inside the frame
        beats_left = Signal.like(beat)
        last_keep = Signal(bpb)
        gap_left = Signal(16)
        in_frame = Signal()

        lanes = [Cat(lfsr[i % 32:], lfsr[:i % 32]) for i in range(0, w // 32 * 7, 7)]
        payload = Cat(*lanes)
        # A local copy of the template: the CSR registers it comes from sit far away.
        template = Signal.like(self.template)
        m.d.sync += template.eq(self.template)
        data = Signal(w)
        template_beats = -(-TEMPLATE_BYTES // bpb)
        # A parallel mux on the beat index (a chain of Ifs would be a priority chain of LUTs).
        with m.Switch(beat):
            for b in range(template_beats):
                lo = b * bpb
                n = min(bpb, TEMPLATE_BYTES - lo)
                with m.Case(b):
                    m.d.comb += data.eq(Cat(template[8 * lo:8 * (lo + n)], payload[8 * n:]))
            with m.Default():
                m.d.comb += data.eq(payload)

        last = beats_left == 1
        m.d.comb += [
            out.tdata.eq(data), out.tlast.eq(last), out.tuser.eq(0),
            out.tkeep.eq(Mux(last, last_keep, (1 << bpb) - 1)),
            out.tvalid.eq(in_frame), self.busy.eq(in_frame),
        ]

        # Register inputs from the CSR block (far away on the die) and the length arithmetic, so
        # the paths into the output are short compares.
        frame_len = Signal(14)
        seed = Signal(32)
        gap = Signal(16)
        gap_zero = Signal()
        enable = Signal()
        m.d.sync += [frame_len.eq(self.frame_len), seed.eq(Mux(self.seed == 0, 0xACE1, self.seed)),
                     gap.eq(self.gap - 1), gap_zero.eq(self.gap == 0), enable.eq(self.enable)]
        n_beats = (frame_len + (bpb - 1)) >> (bpb.bit_length() - 1)
        tail = frame_len[:bpb.bit_length() - 1]          # bytes in the last beat, 0 meaning full
        keep = Signal(bpb)
        m.d.comb += keep.eq(Mux(tail == 0, (1 << bpb) - 1, (Const(1, bpb + 1) << tail) - 1))

        with m.If(~in_frame):
            with m.If(gap_left != 0):
                m.d.sync += gap_left.eq(gap_left - 1)
            with m.Elif(enable):
                m.d.sync += [in_frame.eq(1), beat.eq(0), beats_left.eq(n_beats), last_keep.eq(keep)]
            with m.Else():
                m.d.sync += lfsr.eq(seed)
        with m.Elif(out.tready):
            m.d.sync += [beat.eq(beat + 1), beats_left.eq(beats_left - 1),
                         lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0x80200003, lfsr >> 1))]
            with m.If(last):
                with m.If(gap_zero & enable):   # next frame in the very next cycle
                    m.d.sync += [beat.eq(0), beats_left.eq(n_beats), last_keep.eq(keep)]
                with m.Else():
                    m.d.sync += [in_frame.eq(0), gap_left.eq(gap)]   # the start cycle is idle too
        return m


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

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

__all__ = ["FrameGenerator", "SignatureChecker", "LINETEST_ETHERTYPE", "generator_header"]

#: IEEE 802 local experimental ethertype: the parser forwards it as an unknown L3.
LINETEST_ETHERTYPE = 0x88B5


def generator_header(port: int) -> bytes:
    """Ethernet header of the frames the generator on ``port`` sends (locally administered MACs)."""
    return encode(Ethernet, {"dst": 0x02534E494300 | (port ^ 1), "src": 0x02534E494300 | port,
                             "ethertype": LINETEST_ETHERTYPE})


class FrameGenerator(wiring.Component):
    """Sends frames of ``frame_len`` bytes with ``gap`` idle cycles between them while ``enable``.

    Payload beats are a 32-bit Galois LFSR (x^32 + x^22 + x^2 + x + 1) repeated across the beat.

    Members
    -------
    enable, frame_len, gap, seed: In
    m_axis: Out(AXIStreamSignature(W, 1))
    busy: Out(1)  -- inside a frame
    """

    def __init__(self, data_width: int, port: int):
        self.data_width, self.port = data_width, port
        super().__init__({
            "enable": In(1), "frame_len": In(14), "gap": In(16), "seed": In(32),
            "m_axis": Out(AXIStreamSignature(data_width, 1)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w, bpb = self.data_width, self.data_width // 8
        header = generator_header(self.port)
        out = self.m_axis

        lfsr = Signal(32, init=0xACE1)
        offset = Signal(14)           # byte offset of the current beat in the frame
        gap_left = Signal(16)
        in_frame = Signal()

        # Beat content: header bytes where the beat overlaps bytes 0..13, LFSR elsewhere.
        payload = Cat(*([lfsr] * (w // 32)))
        header_beats = -(-len(header) // bpb)
        data = Signal(w)
        m.d.comb += data.eq(payload)
        for beat in range(header_beats):
            with m.If(offset == beat * bpb):
                chunk = header[beat * bpb:(beat + 1) * bpb]
                const = Const(int.from_bytes(chunk, "little"), 8 * len(chunk))
                m.d.comb += data.eq(Cat(const, payload[8 * len(chunk):]))

        remaining = self.frame_len - offset
        last = remaining <= bpb
        m.d.comb += [
            out.tdata.eq(data),
            out.tlast.eq(last),
            out.tkeep.eq(Mux(last, (Const(1, bpb + 1) << remaining[:len(Const(bpb))]) - 1, (1 << bpb) - 1)),
            out.tuser.eq(0),
            out.tvalid.eq(in_frame),
            self.busy.eq(in_frame),
        ]
        with m.If(~in_frame):
            with m.If(gap_left != 0):
                m.d.sync += gap_left.eq(gap_left - 1)
            with m.Elif(self.enable):
                m.d.sync += [in_frame.eq(1), offset.eq(0)]
            with m.Else():
                m.d.sync += lfsr.eq(Mux(self.seed == 0, 0xACE1, self.seed))
        with m.Elif(out.tready):
            m.d.sync += [offset.eq(offset + bpb),
                         lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0x80200003, lfsr >> 1))]
            with m.If(last):
                m.d.sync += [in_frame.eq(0), gap_left.eq(self.gap)]
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

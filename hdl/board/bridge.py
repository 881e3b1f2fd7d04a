"""UART-to-CSR bridge: a host reaches the AXI4-Lite register space over a serial line.

The wire protocol is specified in docs/uart-bridge.md. Its constants and the CRC are plain
Python here so that the host side (:mod:`host_driver.serialbus`) and the tests use the very same
definitions as the gateware.

Request  (host -> NIC): ``A5 CMD SEQ A0 A1 A2 A3 [D0 D1 D2 D3] CRC``
Response (NIC -> host): ``5A STATUS SEQ D0 D1 D2 D3 CRC``

Multi-byte fields are little-endian. CRC is CRC-8 (poly 0x07, init 0, no reflection, no final
XOR; "CRC-8/SMBUS") over every byte after the sync byte up to the CRC.
"""


import enum

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from hdl.board.uart import UartRx, UartTx, uart_divisor
from hdl.lib.ram import RamFifo
from hdl.lib.stream import AXILiteSignature
from hdl.mgmt.regs import BlockType, counters
from hdl.profile import SPEED, Target

__all__ = ["UartBridge", "Cmd", "Status", "crc8", "SYNC_REQUEST", "SYNC_RESPONSE", "CRC8_POLY",
           "REQUEST_LEN", "RESPONSE_LEN", "TIMEOUT_BITS", "RX_FIFO_DEPTH", "BridgeEvent", "BRIDGE"]

SYNC_REQUEST = 0xA5
SYNC_RESPONSE = 0x5A
CRC8_POLY = 0x07
#: A frame with no byte for this many bit times is dropped as truncated.
TIMEOUT_BITS = 32
#: Bytes the bridge buffers while it executes a request or waits for its previous response to go out.
RX_FIFO_DEPTH = 16
RESPONSE_LEN = 8


class Cmd(enum.IntEnum):
    """Request command byte."""
    READ32 = 0x01
    WRITE32 = 0x02


class Status(enum.IntEnum):
    """Response status byte."""
    OK = 0
    BUS_ERROR = 1      #: SLVERR/DECERR from the bus, or an address the bridge refuses (not issued)
    BAD_CHECKSUM = 2   #: request CRC mismatch; not executed
    BAD_COMMAND = 3    #: unknown command byte (CRC was good); not executed


#: Request length in bytes, sync and CRC included. Unknown commands use the READ32 layout.
REQUEST_LEN = {Cmd.READ32: 8, Cmd.WRITE32: 12}


def crc8(data: bytes | bytearray | list[int], crc: int = 0) -> int:
    """CRC-8/SMBUS of ``data`` (poly 0x07, MSB first, init ``crc``); ``crc8(b"123456789") == 0xF4``."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC8_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc8_next(crc, byte):
    """Gateware CRC-8 update by one byte: a XOR network derived from :func:`crc8` (the CRC is linear
    in ``crc ^ byte`` when init is 0), so it cannot disagree with the host's CRC."""
    x = crc ^ byte
    columns = [crc8([1 << j]) for j in range(8)]
    bits = []
    for i in range(8):
        terms = [x[j] for j in range(8) if columns[j] >> i & 1]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc ^ t
        bits.append(acc)
    return Cat(*bits)


class BridgeEvent(enum.Enum):
    """Request outcomes the bridge signals, one pulse each; the value names the bridge's port."""
    FRAMES_OK = "ok"
    BAD_CHECKSUM = "bad_checksum"
    BAD_COMMAND = "bad_command"
    TRUNCATED = "truncated"


BRIDGE = BlockType(0x0030, 1, "BRIDGE", "UART-to-CSR bridge (board builds): request frames by outcome.", counters(
    0x10, [
        (BridgeEvent.FRAMES_OK, "FRAMES_OK", "Requests executed and answered."),
        (BridgeEvent.BAD_CHECKSUM, "BAD_CHECKSUM", "Requests rejected for a bad CRC (never executed)."),
        (BridgeEvent.BAD_COMMAND, "BAD_COMMAND", "Requests rejected for an unknown command (never executed)."),
        (BridgeEvent.TRUNCATED, "TRUNCATED", "Requests abandoned mid-frame (inter-byte timeout or UART framing "
         "error)."),
    ]))


class UartBridge(wiring.Component):
    """Executes CSR read/write requests received on a UART as AXI4-Lite transactions.

    Parameters
    ----------
    clk_hz:
        Core clock frequency in Hz.
    baud:
        Line rate; ``clk_hz / baud`` (rounded) must be at least 4 and within 2% (see
        :func:`hdl.board.uart.uart_divisor`).
    addr_width:
        Width of the AXI4-Lite address. Requests for addresses at or above ``2**addr_width``, or
        not word aligned, are answered with :attr:`Status.BUS_ERROR` without a bus access.
    target:
        The target profile (:mod:`hdl.profile`, default :data:`~hdl.profile.SPEED`). With
        ``target.block_ram_fifos`` (AREA) the receive FIFO is in block RAM
        (:class:`hdl.lib.ram.RamFifo`, whose read register serves as the holding register), not in
        flip-flops. (Not two classes: the choice is one FIFO and its holding register inside a
        large request FSM.) Same behaviour: a byte reaches the request parser two cycles after the UART
        receiver, and :data:`RX_FIFO_DEPTH` + 1 bytes are buffered, as in the default build.

    Members
    -------
    rx: In(1)
        UART receive line (idle high), asynchronous.
    tx: Out(1)
        UART transmit line (idle high), straight from a flop.
    m_axil: Out(AXILiteSignature(addr_width))
        Bus master. One transaction at a time; ``*valid`` are flops that hold until the handshake,
        ``wstrb`` is all ones, ``*prot`` zero. SLVERR and DECERR become :attr:`Status.BUS_ERROR`.
    ok, bad_checksum, bad_command, truncated: Out(1)
        One-cycle event pulses: a well-formed request accepted (whatever its bus response), a CRC
        mismatch, an unknown command, a request dropped unfinished (inter-byte timeout of
        :data:`TIMEOUT_BITS` bit times or a framing error inside it) or a UART framing error
        between requests.

    Notes
    -----
    Received bytes go through a :data:`RX_FIFO_DEPTH`-byte FIFO, so nothing is lost while a bus
    access runs or while the previous response is still being sent; a host that runs further
    ahead than that loses bytes (they show up as a bad checksum or a truncated frame).
    A bus slave that never answers stalls the bridge (AXI has no abort).
    """

    def __init__(self, *, clk_hz: int, baud: int, addr_width: int, target: Target = SPEED):
        if not 2 < addr_width <= 32:
            raise ValueError(f"addr_width must be in 3..32, not {addr_width!r}")
        self.clk_hz = clk_hz
        self.baud = baud
        self.addr_width = addr_width
        self.target = target
        self.divisor = uart_divisor(clk_hz, baud)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "m_axil": Out(AXILiteSignature(addr_width)),
            "ok": Out(1), "bad_checksum": Out(1), "bad_command": Out(1), "truncated": Out(1),
        })

    def __repr__(self):
        return (f"UartBridge(clk_hz={self.clk_hz}, baud={self.baud}, addr_width={self.addr_width}, "
                f"divisor={self.divisor}{'' if self.target is SPEED else f', target={self.target!r}'})")

    def elaborate(self, platform):
        m = Module()
        bus = self.m_axil
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        # ---- receive FIFO: bit 8 marks a framing error, kept in order with the bytes around it
        wants = Signal()                                  # the FSM's state consumes a byte
        take = Signal()                                   # the FSM consumes the held byte this cycle
        if self.target.block_ram_fifos:
            # Block RAM; its read register holds the byte the FSM looks at (RamFifo.r_data), so
            # one more word of capacity stands for the flip-flop build's holding register.
            m.submodules.rx_fifo = rxf = RamFifo(width=9, depth=RX_FIFO_DEPTH + 1)
            m.d.comb += [rxf.w_data.eq(Cat(urx.o.payload, urx.ferr)), rxf.w_en.eq(urx.o.valid | urx.ferr)]
            hold_valid, byte, ferr = rxf.r_rdy, rxf.r_data[:8], rxf.r_data[8]
            m.d.comb += [rxf.r_en.eq(take), take.eq(wants & hold_valid)]
            rx_pending = rxf.r_rdy                        # a byte has arrived and not been taken
        else:
            m.submodules.rx_fifo = rxf = fifo.SyncFIFO(width=9, depth=RX_FIFO_DEPTH)
            m.d.comb += [rxf.w_data.eq(Cat(urx.o.payload, urx.ferr)), rxf.w_en.eq(urx.o.valid | urx.ferr)]
            # One holding register between the FIFO and the request parser (why: no FSM decode right
            # after a distributed-RAM read). It refills only while empty (a byte per two cycles).
            hold_valid = Signal()
            byte = Signal(8)
            ferr = Signal()
            m.d.comb += [rxf.r_en.eq(~hold_valid), take.eq(wants & hold_valid)]
            with m.If(~hold_valid & rxf.r_rdy):
                m.d.sync += [hold_valid.eq(1), byte.eq(rxf.r_data[:8]), ferr.eq(rxf.r_data[8])]
            with m.Elif(take):
                m.d.sync += hold_valid.eq(0)
            rx_pending = hold_valid | rxf.r_rdy           # a byte has arrived and not been taken

        # ---- request fields
        cmd = Signal(8)
        seq = Signal(8)
        addr = Signal(32)
        wdata = Signal(32)
        crc = Signal(8)
        crc_match = Signal()                              # the CRC byte matched (for CHECK)
        count = Signal(2)                                 # byte index inside ADDR / DATA
        # Reset-less: cleared in every cycle outside a frame, and the FSM leaves reset in HUNT
        # (why: keeps the core reset net out of its clear logic).
        idle = Signal(range(TIMEOUT_BITS * self.divisor + 1), reset_less=True)

        # ---- response registers and sender
        r_status = Signal(8)
        r_seq = Signal(8)
        r_data = Signal(32)                               # loaded by a read's R beat only
        r_has_data = Signal()                             # the response carries r_data (else 0)
        sending = Signal()
        send_idx = Signal(range(RESPONSE_LEN))
        tx_crc = Signal(8)
        send_byte = Signal(8)
        with m.Switch(send_idx):
            with m.Case(0):
                m.d.comb += send_byte.eq(SYNC_RESPONSE)
            with m.Case(1):
                m.d.comb += send_byte.eq(r_status)
            with m.Case(2):
                m.d.comb += send_byte.eq(r_seq)
            for k in range(4):
                with m.Case(3 + k):
                    m.d.comb += send_byte.eq(Mux(r_has_data, r_data[8 * k:8 * k + 8], 0))
            with m.Case(7):
                m.d.comb += send_byte.eq(tx_crc)
        # The byte leaves the mux through a register (offered from the cycle after `sending`
        # rises, when it matches send_idx; after each handshake the transmitter is busy for a
        # whole character, long after the register has caught up), and the CRC takes each sent
        # byte one cycle after the transmitter does (why: mux, CRC step and shift-register load
        # in one cycle missed timing).
        tx_byte = Signal(8, reset_less=True)
        tx_byte_valid = Signal()
        m.d.sync += [tx_byte.eq(send_byte), tx_byte_valid.eq(sending)]
        m.d.comb += [utx.i.payload.eq(tx_byte), utx.i.valid.eq(sending & tx_byte_valid)]
        crc_byte = Signal(8, reset_less=True)
        crc_add = Signal()
        m.d.sync += crc_add.eq(0)
        with m.If(crc_add):
            m.d.sync += tx_crc.eq(_crc8_next(tx_crc, crc_byte))
        with m.If(utx.i.valid & utx.i.ready):
            m.d.sync += send_idx.eq(send_idx + 1)
            with m.If((send_idx != 0) & (send_idx != RESPONSE_LEN - 1)):
                m.d.sync += [crc_byte.eq(tx_byte), crc_add.eq(1)]
            with m.If(send_idx == RESPONSE_LEN - 1):
                m.d.sync += sending.eq(0)

        # The event pulses are reset-less registers (they clear themselves every cycle; why: keeps
        # the core reset net out of their set/reset logic).
        ok, bad_checksum, bad_command, truncated = (
            Signal(name=f"{n}_pulse", reset_less=True) for n in ("ok", "bad_checksum", "bad_command", "truncated"))
        m.d.comb += [self.ok.eq(ok), self.bad_checksum.eq(bad_checksum), self.bad_command.eq(bad_command),
                     self.truncated.eq(truncated)]
        m.d.sync += [ok.eq(0), bad_checksum.eq(0), bad_command.eq(0), truncated.eq(0)]
        m.d.comb += [bus.wstrb.eq(0xF), bus.arprot.eq(0), bus.awprot.eq(0),
                     bus.araddr.eq(addr), bus.awaddr.eq(addr), bus.wdata.eq(wdata)]
        # ADDR and DATA bytes shift in a cycle after they are taken, each field on an enable that
        # is one flip-flop (why: the wdata flip-flops sit by the bus, far from the FSM). The CRC
        # byte is taken at least a cycle after the last field byte, and SETTLE waits one more, so
        # CHECK sees whole fields and the range check made from them.
        field_byte = Signal(8, reset_less=True)
        shift_addr, shift_data = Signal(), Signal()
        m.d.sync += [field_byte.eq(byte), shift_addr.eq(0), shift_data.eq(0)]
        with m.If(shift_addr):
            m.d.sync += addr.eq(Cat(addr[8:], field_byte))
        with m.If(shift_data):
            m.d.sync += wdata.eq(Cat(wdata[8:], field_byte))
        # Request checks as registers, free running: ADDR and CMD are complete bytes before the
        # CRC state uses them (why: not decoded in the state that uses them).
        out_of_range, is_read, is_write = Signal(), Signal(), Signal()
        if self.addr_width < 32:
            m.d.sync += out_of_range.eq((addr[self.addr_width:] != 0) | (addr[:2] != 0))
        else:
            m.d.sync += out_of_range.eq(addr[:2] != 0)
        m.d.sync += [is_read.eq(cmd == Cmd.READ32), is_write.eq(cmd == Cmd.WRITE32)]

        # r_data loads on its own short enable (READ_R and rvalid), and every other response
        # masks it (why: r_data sits by the CSR's rdata, far from the request FSM).
        def respond(status, with_data=False):
            m.d.sync += [r_status.eq(status), r_seq.eq(seq), r_has_data.eq(with_data)]
            m.next = "RESPOND"

        in_frame = Signal()
        timed_out = Signal(reset_less=True)               # TIMEOUT_BITS silent bit times in a frame

        def receiving():
            """Common to every state after SYNC: take bytes; drop the frame on a framing error or
            after TIMEOUT_BITS silent bit times. Never fires together with the state's own
            ``m.next``, which needs a good byte."""
            m.d.comb += [wants.eq(1), in_frame.eq(1)]
            with m.If((take & ferr) | timed_out):
                m.d.sync += truncated.eq(1)
                m.next = "HUNT"

        with m.FSM(name="bridge"):
            with m.State("HUNT"):
                m.d.comb += wants.eq(1)
                with m.If(take):
                    with m.If(ferr):
                        m.d.sync += truncated.eq(1)
                    with m.Elif(byte == SYNC_REQUEST):
                        m.d.sync += crc.eq(0)
                        m.next = "CMD"
            with m.State("CMD"):
                receiving()
                with m.If(take & ~ferr):
                    m.d.sync += [cmd.eq(byte), crc.eq(_crc8_next(crc, byte))]
                    m.next = "SEQ"
            with m.State("SEQ"):
                receiving()
                with m.If(take & ~ferr):
                    m.d.sync += [seq.eq(byte), crc.eq(_crc8_next(crc, byte)), count.eq(0)]
                    m.next = "ADDR"
            with m.State("ADDR"):
                receiving()
                with m.If(take & ~ferr):
                    m.d.sync += [shift_addr.eq(1), crc.eq(_crc8_next(crc, byte)), count.eq(count + 1)]
                    with m.If(count == 3):
                        with m.If(is_write):
                            m.next = "DATA"
                        with m.Else():
                            m.next = "CRC"
            with m.State("DATA"):
                receiving()
                with m.If(take & ~ferr):
                    m.d.sync += [shift_data.eq(1), crc.eq(_crc8_next(crc, byte)), count.eq(count + 1)]
                    with m.If(count == 3):
                        m.next = "CRC"
            with m.State("CRC"):
                receiving()
                with m.If(take & ~ferr):
                    m.d.sync += crc_match.eq(byte == crc)
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                # The last field byte shifts in and the range check catches up (see above).
                m.next = "CHECK"
            with m.State("CHECK"):
                # The frame is complete: decide on registered flags (why: the CRC compare in the
                # decision's cycle missed timing).
                with m.If(~crc_match):
                    m.d.sync += bad_checksum.eq(1)
                    respond(Status.BAD_CHECKSUM)
                with m.Elif(~is_read & ~is_write):
                    m.d.sync += bad_command.eq(1)
                    respond(Status.BAD_COMMAND)
                with m.Elif(out_of_range):
                    m.d.sync += ok.eq(1)
                    respond(Status.BUS_ERROR)
                with m.Elif(is_read):
                    m.d.sync += [ok.eq(1), bus.arvalid.eq(1)]
                    m.next = "READ_AR"
                with m.Else():
                    m.d.sync += [ok.eq(1), bus.awvalid.eq(1), bus.wvalid.eq(1)]
                    m.next = "WRITE_AW"
            with m.State("READ_AR"):
                with m.If(bus.arready):
                    m.d.sync += bus.arvalid.eq(0)
                    m.next = "READ_R"
            with m.State("READ_R"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.sync += r_data.eq(bus.rdata)
                with m.If(bus.rvalid):
                    # SLVERR (2) and DECERR (3) have bit 1 set; EXOKAY does not exist in AXI4-Lite.
                    with m.If(bus.rresp[1]):
                        respond(Status.BUS_ERROR)
                    with m.Else():
                        respond(Status.OK, with_data=True)
            with m.State("WRITE_AW"):
                with m.If(bus.awready):
                    m.d.sync += bus.awvalid.eq(0)
                with m.If(bus.wready):
                    m.d.sync += bus.wvalid.eq(0)
                with m.If((~bus.awvalid | bus.awready) & (~bus.wvalid | bus.wready)):
                    m.next = "WRITE_B"
            with m.State("WRITE_B"):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    respond(Mux(bus.bresp[1], Status.BUS_ERROR, Status.OK))
            with m.State("RESPOND"):
                with m.If(~sending):
                    m.d.sync += [sending.eq(1), send_idx.eq(0), tx_crc.eq(0)]
                    m.next = "SENDING"
            with m.State("SENDING"):
                # The response registers must hold until the last byte is out: a host that
                # pipelines requests would otherwise have the next request's outcome overwrite
                # them mid-response. Its bytes wait in the RX FIFO meanwhile.
                with m.If(~sending):
                    m.next = "HUNT"

        # ---- inside a frame the line must not stay silent: count cycles with nothing to take
        with m.If(~in_frame | rx_pending):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == TIMEOUT_BITS * self.divisor - 1)]
        return m


"""Bulk mode's harness: a Verilog top around ``secnic_top`` whose ports are driven from C++ (DPI-C).

Per port an AXI-Stream source replays frames from a file at their scheduled cycles and a sink
captures egress with the cycle each beat left; the record port is captured too (``bulk_dpi.cpp``).
A C++ main (``bulk_main.cpp``) clocks it; Python writes the input file, starts the simulation,
lets it run in chunks of thousands of cycles and reads the output files back, so no Python and no
VPI run on the per-cycle path (docs/bulk.md).

The harness module ``secnic_bulk`` is generated per configuration from the NIC's Verilog port list;
its ports are ``clk``, ``rst``, ``bulk_go`` (raised once after reset: the next rising edge is
relative cycle 1), ``bulk_done``, ``bulk_records`` (progress) and every NIC port that is not a packet
or record port, ``__`` in its name made ``_`` (the CSR bus as ``s_axil_*``, for the driver).

The source and sink reproduce cocotbext-axi's :class:`AxiStreamSource`/:class:`AxiStreamSink`
without pauses cycle for cycle (sim/run/nic_cocotb.py's ``run`` test), so both paths write the
same files: a frame starts at the first rising edge at or after its start cycle (cycle 1 at the
earliest) at which its port is free, its last beat is presented from the edge its ``end`` names;
egress ``start``/``end`` are the edges at which the first and last beats were accepted.

File formats (little-endian; the C++ reads and writes the same structs):

``frames.bin``
    :data:`HEADER` then per frame :data:`FRAME` (length, port, flags: bit 0 rx_error, start
    cycle) and the frame's bytes padded to 8.
``ingress.bin``
    per input frame, in input order: first and last beat cycles (u64, u64; all ones if never sent).
``records.bin``
    per record: cycle (u64) then the record payload in ``ceil(R / 64)`` u64 words.
``egress.bin``
    per egress frame: :data:`EGRESS` (length, port, flags: bit 0 tuser seen, bit 1 tkeep not
    packed; first and last beat cycles) and the bytes padded to 8.
``ingress_drops.bin``
    per frame an ingress FIFO dropped (``ingress = "drop"``, the NIC's ``ingress_end`` /
    ``ingress_drop`` outputs), in the order dropped: port and the frame's 0-based number among
    that port's frames (u32, u32). Empty for other builds.
``status.json``
    cycles run, records, ingress drops, cycles in which a port held its source back
    (``ingress_stalls``), egress frames per port, ``timed_out``, and for a looped run the frames the
    loop sent back in (``loop_sent``) and lost (``loop_lost``). The run is done when every frame
    has a record or was dropped at ingress.
``loop.txt`` (optional, ``SECNIC_BULK_LOOP``; :class:`sim.bulk.run.Loop` writes it)
    lines ``delay CYCLES``, ``queue FRAMES``, ``until CYCLE``, ``ports P ...`` (port indices): the
    ports closed into a loop through one external flooding switch. A group-addressed frame whose
    last beat leaves one of them is offered to each of the others ``delay`` cycles later, after
    that port's earlier input and looped frames (an input frame first on a tie); at most ``queue``
    frames wait towards a port, the rest are lost. Looped frames have no ``ingress.bin`` entry;
    their records follow in ``records.bin`` like any other.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from hdl.config import NicConfig
from sim.runner import module_ports

__all__ = ["TOPLEVEL", "BulkLayout", "harness_verilog", "write_harness", "write_frames", "read_outputs",
           "HEADER", "FRAME", "EGRESS", "MAGIC", "DPI_SOURCE", "NEVER"]

TOPLEVEL = "secnic_bulk"
NIC = "secnic_top"
MAGIC = b"SNBULK01"
#: magic, n_ports, bytes_per_beat, record_bits, egress field offset and width in the record,
#: flags (bit 0: gated, :data:`GATED`), n_frames, timeout_cycles
HEADER = struct.Struct("<8sIIIIIIQQ")
#: length, port, flags, reserved, start cycle
FRAME = struct.Struct("<IBBHQ")
#: length, port, flags, reserved, first beat cycle, last beat cycle
EGRESS = struct.Struct("<IBBHQQ")
#: Header flag: gated mode (IPS): each input frame waits until Python releases it, the host port's
#: egress frames are handed to Python, Python's re-injections enter the host port (bulk_main.cpp).
GATED = 1
#: ``ingress.bin`` value of a frame that never left its source.
NEVER = (1 << 64) - 1
DPI_SOURCE = Path(__file__).with_name("bulk_dpi.cpp")


@dataclass(frozen=True)
class BulkLayout:
    """What the C++ needs to know about the NIC build: ports, beat size, record layout."""
    n_ports: int
    bytes_per_beat: int
    record_bits: int
    egress_offset: int
    egress_width: int

    @classmethod
    def of(cls, config: NicConfig) -> BulkLayout:
        from amaranth.hdl import Shape

        from hdl.packet.meta import verdict_record_of
        # A build with a security stage (and its payload matcher) carries their fields in the record
        # too (hdl/top.py): the layout of NicTop's record port, from the one definition.
        layout = verdict_record_of(config)
        egress = layout["egress"]
        return cls(len(config.ports), config.bytes_per_beat, Shape.cast(layout).width, egress.offset,
                   Shape.cast(egress.shape).width)

    @property
    def record_words(self) -> int:
        return -(-self.record_bits // 64)


def harness_verilog(config: NicConfig, nic_verilog: str) -> str:
    """The ``secnic_bulk`` module for ``config``, around the ``secnic_top`` in ``nic_verilog``."""
    w = config.data_width
    b = config.bytes_per_beat
    n = len(config.ports)
    rec = BulkLayout.of(config).record_bits
    ports = module_ports(nic_verilog, NIC)
    axis = {f"{d}_axis_{p}__{s}" for p in config.ports for d in "sm"
            for s in ("tdata", "tkeep", "tlast", "tuser", "tvalid", "tready")}
    # Drop-mode builds (ingress = "drop") show each frame's fate at ingress; others have no such ports.
    fates = {"ingress_end", "ingress_drop"} & {name for _, _, name in ports}
    own = axis | {"clk", "rst", "record__valid", "record__payload"} | fates
    missing = own - {name for _, _, name in ports}
    if missing:
        raise ValueError(f"{NIC} lacks the ports the bulk harness drives: {sorted(missing)}")
    passthrough = [(d, width, name) for d, width, name in ports if name not in own]

    def vec(width):
        return f"[{width - 1}:0] " if width > 1 else ""
    head = ["input wire clk", "input wire rst", "input wire bulk_go", "output reg bulk_done = 1'b0",
            "output reg [31:0] bulk_records = 32'd0"]
    # Verilator mangles "__" in C++ member names: the harness's own names use one underscore.
    head += [f"{d} wire {vec(width)}{name.replace('__', '_')}" for d, width, name in passthrough]
    conns = [".clk(clk)", ".rst(rst)", ".record__valid(rec_valid)", ".record__payload(rec_payload)"]
    for i, p in enumerate(config.ports):
        conns += [f".s_axis_{p}__tdata(s_tdata[{i * w} +: {w}])", f".s_axis_{p}__tkeep(s_tkeep[{i * b} +: {b}])",
                  f".s_axis_{p}__tlast(s_tlast[{i}])", f".s_axis_{p}__tuser(s_tuser[{i}])",
                  f".s_axis_{p}__tvalid(s_tvalid[{i}])", f".s_axis_{p}__tready(s_tready[{i}])",
                  f".m_axis_{p}__tdata(m_tdata[{i * w} +: {w}])", f".m_axis_{p}__tkeep(m_tkeep[{i * b} +: {b}])",
                  f".m_axis_{p}__tlast(m_tlast[{i}])", f".m_axis_{p}__tuser(m_tuser[{i}])",
                  f".m_axis_{p}__tvalid(m_tvalid[{i}])", f".m_axis_{p}__tready(m_tready)"]
    conns += [f".{name}({name.replace('__', '_')})" for _, _, name in passthrough]
    if fates:
        conns += [".ingress_end(ing_end)", ".ingress_drop(ing_drop)"]
        fate_wires = ""
    else:
        fate_wires = "\n    assign ing_end = '0;\n    assign ing_drop = '0;"
    sep = ",\n    "
    sep2 = ",\n        "
    return f"""// Bulk-mode harness for secnic_top: generated by sim/bulk/harness.py, do not edit.
// Ports: {', '.join(config.ports)}; W={w}; record {rec} bits.
module {TOPLEVEL} (
    {sep.join(head)}
);
    import "DPI-C" function void secnic_bulk_cycle(
        input bit go, input bit [{n - 1}:0] s_tready,
        input bit [{n - 1}:0] m_tvalid, input bit [{n - 1}:0] m_tlast, input bit [{n - 1}:0] m_tuser,
        input bit [{n * w - 1}:0] m_tdata, input bit [{n * b - 1}:0] m_tkeep,
        input bit rec_valid, input bit [{rec - 1}:0] rec_payload,
        input bit [{n - 1}:0] ing_end, input bit [{n - 1}:0] ing_drop,
        output bit [{n - 1}:0] o_tvalid, output bit [{n - 1}:0] o_tlast, output bit [{n - 1}:0] o_tuser,
        output bit [{n * w - 1}:0] o_tdata, output bit [{n * b - 1}:0] o_tkeep,
        output bit o_done, output int o_records);
    import "DPI-C" function void secnic_bulk_final();

    reg [{n - 1}:0] s_tvalid = '0, s_tlast = '0, s_tuser = '0;
    reg [{n * w - 1}:0] s_tdata = '0;
    reg [{n * b - 1}:0] s_tkeep = '0;
    reg m_tready = 1'b0;
    wire [{n - 1}:0] s_tready, m_tvalid, m_tlast, m_tuser;
    wire [{n * w - 1}:0] m_tdata;
    wire [{n * b - 1}:0] m_tkeep;
    wire rec_valid;
    wire [{rec - 1}:0] rec_payload;
    wire [{n - 1}:0] ing_end, ing_drop;{fate_wires}

    {NIC} nic (
        {sep2.join(conns)}
    );

    bit [{n - 1}:0] o_tvalid, o_tlast, o_tuser;
    bit [{n * w - 1}:0] o_tdata;
    bit [{n * b - 1}:0] o_tkeep;
    bit o_done;
    int o_records;
    // Everything is sampled at the rising edge (values before it) and driven after it, as
    // cocotbext-axi's sources and sinks do.
    always @(posedge clk) begin
        secnic_bulk_cycle(bulk_go, s_tready, m_tvalid, m_tlast, m_tuser, m_tdata, m_tkeep,
                          rec_valid, rec_payload, ing_end, ing_drop, o_tvalid, o_tlast, o_tuser, o_tdata, o_tkeep,
                          o_done, o_records);
        s_tvalid <= o_tvalid;
        s_tlast <= o_tlast;
        s_tuser <= o_tuser;
        s_tdata <= o_tdata;
        s_tkeep <= o_tkeep;
        bulk_done <= o_done;
        bulk_records <= o_records;
        m_tready <= !rst;
    end
    final secnic_bulk_final();
endmodule
"""


def write_harness(config: NicConfig, nic_sv: Path) -> Path:
    """Write ``secnic_bulk.sv`` for ``config`` next to the NIC's Verilog ``nic_sv`` (kept as it is
    when unchanged, so builds stay cached); return its path."""
    out = nic_sv.with_name(f"{TOPLEVEL}.sv")
    text = harness_verilog(config, nic_sv.read_text())
    if not out.exists() or out.read_text() != text:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return out


def write_frames(path: Path, config: NicConfig, frames, timeout_cycles: int, *, gated: bool = False) -> Path:
    """Write ``frames.bin``: ``frames`` as ``(port_index, bytes, rx_error, start_cycle_or_None)``,
    in input order (None: as soon as the port is free); ``gated``: :data:`GATED` mode."""
    lay = BulkLayout.of(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(HEADER.pack(MAGIC, lay.n_ports, lay.bytes_per_beat, lay.record_bits, lay.egress_offset,
                             lay.egress_width, GATED if gated else 0, len(frames), int(timeout_cycles)))
        pad = bytes(8)
        for n, (port, data, err, start) in enumerate(frames):
            if not data:
                raise ValueError(f"frame {n} is empty: an AXI-Stream frame carries at least one byte")
            if not 0 <= port < lay.n_ports:
                raise ValueError(f"frame {n}: port {port} out of range")
            fh.write(FRAME.pack(len(data), port, 1 if err else 0, 0, max(1, int(start or 0))))
            fh.write(data)
            fh.write(pad[:-len(data) % 8])
    return path


def read_outputs(out_dir: Path, config: NicConfig, n_frames: int) -> dict:
    """Read the C++ side's output files into the shape of :func:`sim.run.nic_cocotb.read_results`
    (records as ``[cycle, int]``, ingress ``[start, end]`` or None, egress per port name), plus
    ``status`` and per-frame ``flags`` of egress frames."""
    out_dir = Path(out_dir)
    lay = BulkLayout.of(config)
    status = json.loads((out_dir / "status.json").read_text())
    ingress = [None if s == NEVER else [s, e]
               for s, e in struct.iter_unpack("<QQ", (out_dir / "ingress.bin").read_bytes())]
    if len(ingress) != n_frames:
        raise RuntimeError(f"ingress.bin holds {len(ingress)} frames, expected {n_frames}")
    raw = (out_dir / "records.bin").read_bytes()
    row = 8 * (1 + lay.record_words)
    records = [[int.from_bytes(raw[k:k + 8], "little"), int.from_bytes(raw[k + 8:k + row], "little")]
               for k in range(0, len(raw), row)]
    egress = {name: [] for name in config.ports}
    data = (out_dir / "egress.bin").read_bytes()
    pos = 0
    while pos < len(data):
        length, port, flags, _, start, end = EGRESS.unpack_from(data, pos)
        pos += EGRESS.size
        egress[config.ports[port]].append({"data": data[pos:pos + length], "start": start, "end": end,
                                           "flags": flags})
        pos += length + (-length % 8)
    drops = None
    if config.ingress_fifos:
        drops = {str(p): [] for p in range(len(config.ports))}
        for port, number in struct.iter_unpack("<II", (out_dir / "ingress_drops.bin").read_bytes()):
            drops[str(port)].append(number)
    return {"status": status, "ingress": ingress, "records": records, "egress": egress, "ingress_drops": drops,
            "ingress_stalls": status.get("ingress_stalls")}

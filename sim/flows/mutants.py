"""``python -m sim.flows.mutants`` (``make mutants``): do the tests catch deliberate bugs?

Each entry of :data:`MUTANTS` is one deliberate bug (a wrong header offset, a lost counter
increment, an off-by-one in a frame length, a swapped port, ...) in the gateware (``hdl/``) or
the golden model (``host_driver/model/``), written as an exact source snippet and its
replacement, with the pytest selection that is expected to catch it. For each mutant the runner:

1. checks the snippet occurs exactly once in its file and that the mutated file still parses (a
   missing or ambiguous snippet, or a syntax slip, is an *error*, never a kill);
2. writes the mutated file into a scratch copy of the tree (the working tree itself is never
   written; the copy is restored after every mutant and removed at the end);
3. runs the mutant's tests there with pytest (``-x``): *killed* if a test fails, *survived* if
   they all pass, *timeout* (counted as killed: the tests hung on the bug) past ``--timeout``,
   *error* if pytest could not run them (collection error, no test selected).

Before the mutants, a *baseline* runs every selected test on the unmutated copy: a test that
already fails would "kill" every mutant, so the run stops there.

Prints one line per mutant as it finishes and a table at the end, writes the pytest output of
each mutant to ``build/mutants/<name>.log`` and a summary to ``build/mutants/results.json``.
Exit status: 0 when every mutant was killed, 1 if any survived or could not be run, 2 for bad
options.

Editing the table: when the code a snippet points at changes, ``tests/flows/test_mutants.py``
fails and names the mutant; update ``find`` (and ``replace``) to the new code. A mutant that
survives shows a weak test: strengthen the test (or add one), don't drop the mutant.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mutant", "MUTANTS", "Outcome", "MutantResult", "REPO_ROOT", "snippet_error", "mutate",
           "copy_tree", "run_mutants", "run_baseline", "main"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace ``find`` (which must occur exactly once in ``file``) by ``replace``.

    ``tests`` are pytest arguments (node ids, files, or ``"-k", "EXPR"``) relative to the
    repository root, chosen to be the fast tests that should catch this bug. ``bug`` says in
    a few words what a hardware engineer would have got wrong.
    """
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    bug: str

    @property
    def kind(self) -> str:
        """``"gateware"`` (under ``hdl/``) or ``"model"`` (the golden model and host side)."""
        return "gateware" if self.file.startswith("hdl/") else "model"


# -- the table ----------------------------------------------------------------------------------
# Files and tests used below, so that each entry reads as: where, what, into what, caught by.
_PARSER_CAPTURE = "hdl/parser/capture.py"
_PARSER_L2 = "hdl/parser/l2.py"
_PARSER_L3 = "hdl/parser/l3.py"
_PARSER_L4 = "hdl/parser/l4.py"
_PARSER_RECORD = "hdl/parser/record.py"
_FORWARD = "hdl/datapath/forward.py"
_ARBITER = "hdl/datapath/arbiter.py"
_BUFFER = "hdl/datapath/buffer.py"
_CSR = "hdl/mgmt/csr.py"
_REGS = "hdl/mgmt/regs.py"
_TOP = "hdl/top.py"
_LINETEST = "hdl/board/linetest.py"
_BRIDGE = "hdl/board/bridge.py"
_MODEL = "host_driver/model/nic.py"

_T_PARSER = "tests/parser/test_parser_amaranth.py"
_T_DATAPATH = "tests/datapath/test_datapath_amaranth.py"
_T_DATAPATH_GAPS = "tests/datapath/test_datapath_amaranth.py"
_T_CSR = "tests/mgmt/test_csr_amaranth.py"
_T_REGS_GAPS = "tests/datapath/test_ports_regs.py"
_T_LINETEST = "tests/board/test_linetest_amaranth.py"
_T_BRIDGE = "tests/board/test_bridge_amaranth.py"
_T_NIC = "tests/nic/test_sim_nic.py"
_T_MODEL = "tests/host/test_model.py"
_T_MODEL_GAPS = "tests/host/test_model_mutation_gaps.py"
_T_DRIVER = "tests/host/test_driver.py"

_PARSER_HEADERS = f"{_T_PARSER}::test_headers[pipelined-64-full]"
# Malformed frames: scapy cannot settle them, so the hand-written cases of docs/parser.md do.
_MODEL_CASES = f"{_T_MODEL}::test_model_matches_hand_written_case"
_MODEL_EDGES = f"{_T_MODEL}::test_model_matches_scapy_on_edge_cases"

MUTANTS: tuple[Mutant, ...] = (
    # ---- gateware: pipelined parser ------------------------------------------------------------
    Mutant("parser_l3_offset_two_tags", _PARSER_L2,
           'self.l3_offset = p.reg(by_tags(14, 18, 22), 1, "s1_l3off", 5)',
           'self.l3_offset = p.reg(by_tags(14, 18, 18), 1, "s1_l3off", 5)',
           (_PARSER_HEADERS,), "L3 offset after two VLAN tags taken as after one (wrong header offset)"),
    Mutant("parser_tcp_flags_wrong_word", _PARSER_RECORD,
           "tcp = view(Tcp, Cat(l4.word0, Const(0, 64), l4.word3, Const(0, 32)))",
           "tcp = view(Tcp, Cat(l4.word0, Const(0, 32), l4.word3, Const(0, 64)))",
           (_PARSER_HEADERS,), "TCP bytes 12..15 (data offset, flags) read 4 bytes early"),
    Mutant("parser_frame_len_plus_one", _PARSER_CAPTURE,
           '+ top_byte_count(snoop_top), 0, "s0_len",',
           '+ top_byte_count(snoop_top) + 1, 0, "s0_len",',
           (_PARSER_HEADERS,), "frame length counts one byte too many (off-by-one in frame length)"),
    Mutant("parser_runt_at_59", _PARSER_L2,
           'lt60 = p.reg(lt(length, 60), 2, "s2_lt60")',
           'lt60 = p.reg(lt(length, 59), 2, "s2_lt60")',
           (_PARSER_HEADERS,), "a 59-byte frame on a physical port is not flagged runt"),
    Mutant("parser_oversize_off_by_one", _PARSER_L2,
           'self.oversize = p.reg(lt(cfg.max_frame, length), 2, "s2_oversize")',
           'self.oversize = p.reg(lt(cfg.max_frame + 1, length), 2, "s2_oversize")',
           (f"{_T_PARSER}::test_long_frames[pipelined-64]",), "a max_frame + 1 byte frame is not oversize"),
    Mutant("parser_bad_ihl_not_raised", _PARSER_L3,
           'v4_ihl = p.reg(ip4.ihl < 5, 3, "s3_v4_ihl")',
           'v4_ihl = p.reg(ip4.ihl < 4, 3, "s3_v4_ihl")',
           (_PARSER_HEADERS,), "IPv4 IHL 4 not flagged bad_ipv4_ihl (malformed reason not raised)"),
    Mutant("parser_tcp_offset_4_accepted", _PARSER_L4,
           "self.bad_data_offset = p.reg((d_off < 5)",
           "self.bad_data_offset = p.reg((d_off < 4)",
           (_PARSER_HEADERS,), "TCP data offset 4 not flagged bad_tcp_offset"),
    Mutant("parser_ipv4_src_is_dst", _PARSER_L3,
           'self.ip_src = p.reg(ip_addr(ip6.src, ip4.src, arp.spa), 3, "s3_ip_src", 128)',
           'self.ip_src = p.reg(ip_addr(ip6.src, ip4.dst, arp.spa), 3, "s3_ip_src", 128)',
           (_PARSER_HEADERS,), "IPv4 source address read from the destination field"),
    Mutant("parser_sport_is_dport", _PARSER_RECORD,
           '"sport": gate(tcp.sport, l4.ports_clr),',
           '"sport": gate(tcp.dport, l4.ports_clr),',
           (_PARSER_HEADERS,), "L4 source port reported as the destination port"),
    # ---- gateware: data path -------------------------------------------------------------------
    Mutant("forwarder_reflects_to_in_port", _FORWARD,
           "peer = p.in_port ^ 1",
           "peer = p.in_port",
           (f"{_T_DATAPATH}::test_forwarder_precedence_and_peer_port",),
           "frames sent back out of their ingress port (swapped port)"),
    Mutant("forwarder_oversize_before_rx_error", _FORWARD,
           "(p.rx_error, DropReason.RX_ERROR),\n                (oversize, DropReason.OVERSIZE),",
           "(oversize, DropReason.OVERSIZE),\n                (p.rx_error, DropReason.RX_ERROR),",
           (f"{_T_DATAPATH}::test_forwarder_precedence_and_peer_port",),
           "drop reason precedence: oversize wins over rx_error"),
    Mutant("arbiter_drops_tlast", _ARBITER,
           'for field in ("tdata", "tkeep", "tlast"):',
           'for field in ("tdata", "tkeep"):',
           (f"{_T_DATAPATH}::test_arbiter_keeps_frames_whole_and_tags_ports[0-2]",),
           "tlast not passed through the arbiter (dropped tlast)"),
    Mutant("arbiter_port_tag_swapped", _ARBITER,
           "out.tuser.eq(Cat(bad, index))",
           "out.tuser.eq(Cat(index, bad))",
           (f"{_T_DATAPATH}::test_arbiter_keeps_frames_whole_and_tags_ports[0-2]",),
           "rx_error bit and port tag swapped in tuser"),
    Mutant("buffer_dropped_frames_leak", _BUFFER,
           "out.tvalid.eq(active & beats.r_rdy & ~cur_drop & (cur_port == i))",
           "out.tvalid.eq(active & beats.r_rdy & (cur_port == i))",
           (f"{_T_DATAPATH}::test_buffer_forwards_or_discards_whole_frames[default-64]",),
           "frames with a drop verdict still leave the buffer"),
    Mutant("buffer_truncation_sticks", _BUFFER,
           "m.d.sync += [beat_index.eq(0), truncating.eq(0)]",
           "m.d.sync += beat_index.eq(0)",
           (f"{_T_DATAPATH}::test_buffer_forwards_or_discards_whole_frames[default-64]",
            f"{_T_DATAPATH_GAPS}::test_max_frame_leaves_whole_and_oversize_frames_do_not_block[w64]"),
           "truncation not cleared at an oversize frame's end: the frames after it lose their middle"),
    Mutant("buffer_oversize_tail_not_stored", _BUFFER,
           "store = ~truncating | in_last",
           "store = ~truncating",
           (f"{_T_DATAPATH}::test_buffer_forwards_or_discards_whole_frames[default-64]",
            f"{_T_DATAPATH_GAPS}::test_max_frame_leaves_whole_and_oversize_frames_do_not_block[w64]"),
           "an oversize frame's last beat is not stored: the reader never finds its end (dropped tlast)"),
    # ---- gateware: management plane ------------------------------------------------------------
    Mutant("csr_wstrb_ignored", _CSR,
           "with m.If(enable[byte]):",
           "with m.If(enable.any()):",
           (f"{_T_CSR}::test_scratch_strobes_and_errors[default-registers]",),
           "byte strobes ignored: a partial write overwrites the whole word"),
    Mutant("csr_readonly_write_okay", _CSR,
           "bus.bresp.eq(Mux(any_hit, OKAY, SLVERR))",
           "bus.bresp.eq(Mux(any_hit, OKAY, OKAY))",
           (f"{_T_CSR}::test_scratch_strobes_and_errors[default-registers]",),
           "a write to a read-only or unmapped address answers OKAY, not SLVERR"),
    Mutant("csr_hi_latch_takes_low_word", _CSR,
           "hi_latch.eq(sel_hi)",
           "hi_latch.eq(sel_out)",
           (f"{_T_CSR}::test_counters_count_and_coherent[default-registers]",),
           "LO read latches the low word, so HI after LO returns the low half"),
    Mutant("csr_bram_increment_lost_at_flush", "hdl/mgmt/counters.py",
           "pending.eq(Mux(sel, self.count[key], pending + self.count[key]))",
           "pending.eq(Mux(sel, 0, pending + self.count[key]))",
           (f"{_T_CSR}::test_bram_every_counter_every_cycle[bram-default]",),
           "an increment arriving in its counter's flush cycle is lost (lost counter increment)"),
    Mutant("regs_port_flags_wrong_bit", "hdl/datapath/ports.py",
           '"FLAGS": int(config.is_physical(config.ports[index]))',
           '"FLAGS": int(config.is_physical(config.ports[index])) << 1',
           (_T_DRIVER, _T_REGS_GAPS),
           "PORT.FLAGS physical bit at bit 1 instead of bit 0 (register field at the wrong bit)"),
    Mutant("regs_hw_version_minor_bit", _REGS,
           '"HW_VERSION": major << 16 | minor << 8 | patch',
           '"HW_VERSION": major << 16 | minor << 4 | patch',
           (f"{_T_DRIVER}::test_identity",), "IDENTITY.HW_VERSION minor field at bit 4 instead of bit 8"),
    # ---- gateware: NIC top (the one cocotb kill test: the whole NIC in Icarus against the model)
    Mutant("top_tx_packets_counts_beats", _TOP,
           'csr.count(port.event(PortCounter.TX_PACKETS)).eq(beat & out.tlast)',
           'csr.count(port.event(PortCounter.TX_PACKETS)).eq(beat)',
           (f"{_T_NIC}::test_icarus_w64_flow_subset[idle]",), "tx_packets counts egress beats, not frames"),
    # ---- gateware: board blocks ------------------------------------------------------------------
    Mutant("linetest_signature_rotates_right", _LINETEST,
           "self.value.eq(Cat(self.value[31], self.value[:31]) ^ folded_r)",
           "self.value.eq(Cat(self.value[1:], self.value[0]) ^ folded_r)",
           (f"{_T_LINETEST}::test_signature_checker_matches_reference[64]",),
           "egress signature rotates right instead of left"),
    Mutant("linetest_frame_one_beat_short", _LINETEST,
           "last.eq(beats_left == 2), last_out.eq(beats_left == 2)",
           "last.eq(beats_left == 3), last_out.eq(beats_left == 3)",
           (f"{_T_LINETEST}::test_generator_frames_and_signature[61-3-64]",),
           "generated frames end one beat early (tlast too soon)"),
    Mutant("bridge_crc_not_checked", _BRIDGE,
           "m.d.sync += crc_match.eq(byte == crc)",
           "m.d.sync += crc_match.eq(1)",
           (f"{_T_BRIDGE}::test_bad_checksum_not_executed[default]",),
           "requests with a bad CRC executed (bad_checksum never raised)"),
    Mutant("bridge_unaligned_issued", _BRIDGE,
           "m.d.sync += out_of_range.eq((addr[self.addr_width:] != 0) | (addr[:2] != 0))",
           "m.d.sync += out_of_range.eq(addr[self.addr_width:] != 0)",
           (f"{_T_BRIDGE}::test_out_of_range_and_unaligned_not_issued[default]",),
           "unaligned addresses issued on the bus instead of answered BUS_ERROR"),
    # ---- golden model ----------------------------------------------------------------------------
    Mutant("model_trunc_l2_at_14", _MODEL,
           "if self.L < Ethernet.BYTES:",
           "if self.L <= Ethernet.BYTES:",
           (_MODEL_CASES,), "a 14-byte frame flagged trunc_l2 (off-by-one in frame length)"),
    Mutant("model_second_vlan_tag_ignored", _MODEL,
           "while n < 2 and t in VLAN_TPIDS:",
           "while n < 1 and t in VLAN_TPIDS:",
           (f"{_T_MODEL}::test_third_tag_is_unknown_ethertype", _MODEL_EDGES), "only one VLAN tag parsed"),
    Mutant("model_l3_offset_one_tag", _MODEL,
           'm["l3_offset"] = Ethernet.BYTES + VlanTag.BYTES * n',
           'm["l3_offset"] = Ethernet.BYTES + VlanTag.BYTES * min(n, 1)',
           (_MODEL_EDGES,), "L3 offset after two VLAN tags taken as after one (wrong header offset)"),
    Mutant("model_bad_ihl_not_raised", _MODEL,
           "if ip.ihl < 5:",
           "if ip.ihl < 4:",
           (_MODEL_CASES,), "IPv4 IHL 4 not flagged bad_ipv4_ihl (malformed reason not raised)"),
    Mutant("model_ip_len_below_ihl_accepted", _MODEL,
           "if ip.total_length > avail or ip.total_length < 4 * ip.ihl:",
           "if ip.total_length > avail:",
           (_MODEL_CASES,), "IPv4 total length shorter than the header not flagged ip_len_mismatch"),
    Mutant("model_l4_offset_ignores_options", _MODEL,
           'm["l4_offset"] = l3 + 4 * ip.ihl',
           'm["l4_offset"] = l3 + IPv4.BYTES',
           (_MODEL_EDGES,), "L4 offset ignores IPv4 options (wrong header offset)"),
    Mutant("model_first_fragment_not_flagged", _MODEL,
           'm["ip_fragment"] = int(bool(ip.flag_mf) or ip.frag_offset != 0)',
           'm["ip_fragment"] = int(ip.frag_offset != 0)',
           (_MODEL_EDGES,), "a first fragment (MF set, offset 0) not flagged ip_fragment"),
    Mutant("model_tcp_offset_4_accepted", _MODEL,
           "if tcp.data_offset < 5 or",
           "if tcp.data_offset < 4 or",
           (f"{_T_MODEL}::test_bad_tcp_offset_keeps_ports",), "TCP data offset 4 not flagged bad_tcp_offset"),
    Mutant("model_runt_at_59", _MODEL,
           "if physical and self.L < MIN_PHYSICAL_FRAME:",
           "if physical and self.L < MIN_PHYSICAL_FRAME - 1:",
           (_MODEL_EDGES,), "a 59-byte frame on a physical port is not flagged runt"),
    Mutant("model_oversize_at_max_frame", _MODEL,
           "if self.L > max_frame:",
           "if self.L >= max_frame:",
           (f"{_T_MODEL}::test_frame_len_saturates_and_oversize",), "a max_frame-byte frame flagged oversize"),
    Mutant("model_arp_opcode_high_byte", _MODEL,
           'm["ip_proto"] = arp.oper & 0xFF',
           'm["ip_proto"] = arp.oper >> 8',
           (f"{_T_MODEL}::test_arp_variants",), "ARP opcode taken from its high byte"),
    Mutant("model_tx_packets_not_counted", _MODEL,
           'self.count(self._ports[out].event(PortCounter.TX_PACKETS))',
           "pass",
           (f"{_T_MODEL}::test_counters_balance_on_demo_mix",),
           "tx_packets never incremented (lost counter increment)"),
    Mutant("model_rx_bytes_unsaturated", _MODEL,
           'self.count(self._ports[port].event(PortCounter.RX_BYTES), meta["frame_len"])',
           'self.count(self._ports[port].event(PortCounter.RX_BYTES), len(frame))',
           (f"{_T_MODEL}::test_rx_bytes_saturate_per_frame",), "rx_bytes adds the true length, not the saturated one"),
    Mutant("model_egress_same_port", _MODEL,
           "egress = [1 - port]",
           "egress = [port]",
           (f"{_T_MODEL}::test_drop_precedence",), "frames sent back out of their ingress port (swapped port)"),
    Mutant("model_oversize_before_rx_error", _MODEL,
           'if rx_error:\n            reason = DropReason.RX_ERROR\n'
           '        elif meta["malformed"] >> MalformedReason.OVERSIZE & 1:\n'
           '            reason = DropReason.OVERSIZE',
           'if meta["malformed"] >> MalformedReason.OVERSIZE & 1:\n            reason = DropReason.OVERSIZE\n'
           '        elif rx_error:\n            reason = DropReason.RX_ERROR',
           (f"{_T_MODEL}::test_drop_precedence",), "drop reason precedence: oversize wins over rx_error"),
    Mutant("model_hi_word_always_live", _MODEL,
           "if self._latch_owner != what and HI_WITHOUT_LO_READS_LIVE:",
           "if HI_WITHOUT_LO_READS_LIVE:",
           (f"{_T_DRIVER}::test_read_counter64_and_latch_coherence",),
           "HI word read live even right after its LO: torn 64-bit counter reads"),
    Mutant("model_counter_wraps_at_32_bits", _MODEL,
           "& ((1 << self.config.counter_width) - 1)",
           "& ((1 << 32) - 1)",
           (f"{_T_MODEL}::test_counters_keyed_like_register_map_and_wrap", _T_MODEL_GAPS),
           "64-bit counters wrap at 2**32"),
)


# -- applying a mutant ----------------------------------------------------------------------------

def snippet_error(mutant: Mutant, root: Path = REPO_ROOT) -> str | None:
    """Why ``mutant`` cannot be applied to the tree at ``root`` (None if it can).

    The snippet must occur exactly once in its file, differ from its replacement, and the
    mutated file must still parse as Python (a mutant is a semantic bug, not a syntax slip).
    """
    path = root / mutant.file
    if not path.is_file():
        return f"{mutant.file}: no such file"
    if mutant.find == mutant.replace:
        return "replacement is the same as the snippet"
    text = path.read_text()
    count = text.count(mutant.find)
    if count != 1:
        where = "not found" if count == 0 else f"ambiguous: occurs {count} times"
        return f"snippet {where} in {mutant.file}: {mutant.find!r}"
    try:
        ast.parse(text.replace(mutant.find, mutant.replace), filename=mutant.file)
    except SyntaxError as exc:
        return f"mutated {mutant.file} does not parse: {exc.msg} (line {exc.lineno}, column {exc.offset})"
    return None


def mutate(mutant: Mutant, text: str) -> str:
    """``text`` with the mutant's snippet replaced (the snippet must occur exactly once)."""
    if text.count(mutant.find) != 1:
        raise ValueError(f"mutant {mutant.name}: snippet does not occur exactly once in {mutant.file}")
    return text.replace(mutant.find, mutant.replace)


# -- scratch copies ------------------------------------------------------------------------------

_SKIP_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache", "sim_build"}


def _tree_files(root: Path) -> list[Path]:
    """Files of the working tree, relative to ``root``: tracked and untracked-not-ignored ones
    (as they are on disk, uncommitted edits included), or every file outside build/cache
    folders when ``root`` is not a git checkout."""
    if (root / ".git").exists():          # a directory, or a file in a git worktree
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout
        names = [Path(n) for n in out.decode().split("\0") if n]
        return [n for n in names if (root / n).is_file()]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        files += [Path(dirpath, f).relative_to(root) for f in filenames if not f.endswith(".pyc")]
    return files


def copy_tree(root: Path, dest: Path) -> Path:
    """Copy the working tree at ``root`` into ``dest/tree`` and return that path.

    Tests find third-party captures at ``<repo>/../shared`` (tests/conftest.py): when the
    repository has such a sibling, ``dest/shared`` links to it so the copy sees the same data.
    """
    tree = dest / "tree"
    files = _tree_files(root)
    for rel in files:
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    log.debug("copied %d files of %s into %s", len(files), root, tree)
    shared = root.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return tree


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy comes first on the path (the venv's editable install points at the real tree),
    # and no bytecode is written: a restored file can have the same size and mtime second as
    # its mutant, and a stale .pyc of the mutant would then be used.
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("SECNIC_BUILD_DIR", None)      # simulator builds of mutants stay inside the copy
    return env


def check_imports_from(tree: Path, packages: Iterable[str]) -> None:
    """Raise RuntimeError unless ``packages`` import from ``tree`` in the environment the tests get
    (a mutant applied to a copy the tests do not import would always survive)."""
    packages = sorted(set(packages))
    code = "import sys, importlib; print('\\n'.join(importlib.import_module(p).__file__ for p in sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, *packages], cwd=tree, env=_env(tree), capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"cannot import {', '.join(packages)} in the scratch copy:\n{out.stderr}")
    for line in out.stdout.split():
        if not Path(line).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"the tests would import {line}, not the scratch copy {tree}")


# -- running tests --------------------------------------------------------------------------------

class Outcome:
    """What happened to a mutant (plain strings, as they appear in the table and results.json)."""
    KILLED = "killed"
    TIMEOUT = "timeout"      # the tests hung on the bug: counted as killed
    SURVIVED = "survived"
    ERROR = "error"          # could not be applied or its tests could not run: never a kill


@dataclass
class MutantResult:
    """The outcome of one mutant, with the wall time of its test run and a short reason."""
    mutant: Mutant
    outcome: str
    seconds: float = 0.0
    detail: str = ""

    @property
    def killed(self) -> bool:
        return self.outcome in (Outcome.KILLED, Outcome.TIMEOUT)


# pytest runs still going, so that an interrupted run can stop them: each runs in a session of
# its own (so that a timeout kills the simulators it started too), out of reach of Ctrl-C.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_live() -> None:
    with _live_lock:
        for proc in _live:
            _kill(proc)


def _pytest(tree: Path, args: Sequence[str], timeout: float, log_path: Path | None) -> tuple[int | None, float, str]:
    """Run pytest in ``tree``; return (exit code or None on timeout, seconds, output tail)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--tb=short", *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    with _live_lock:
        _live.add(proc)
    try:
        output, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _kill(proc)
        output, _ = proc.communicate()
        rc = None
    finally:
        with _live_lock:
            _live.discard(proc)
    seconds = time.monotonic() - t0
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {' '.join(cmd)}\n(cwd {tree})\n\n{output}")
    tail = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or [""]
    return rc, seconds, tail[0]


def _classify(rc: int | None) -> str:
    # pytest exit codes: 0 all passed, 1 some failed, 2 interrupted (collection error),
    # 3 internal error, 4 usage error, 5 nothing collected.
    if rc is None:
        return Outcome.TIMEOUT
    return {0: Outcome.SURVIVED, 1: Outcome.KILLED}.get(rc, Outcome.ERROR)


def run_baseline(tree: Path, mutants: Sequence[Mutant], timeout: float, log_dir: Path | None) -> tuple[bool, str]:
    """Run the tests the mutants select, unmutated; (all passed, summary).

    Node ids and files are run together in one pytest session; a selection with ``-k`` runs on
    its own (its expression applies to its whole argument list)."""
    merged: list[str] = []
    runs: list[tuple[str, ...]] = []
    for m in mutants:
        if "-k" in m.tests:
            if m.tests not in runs:
                runs.append(m.tests)
        else:
            merged += [a for a in m.tests if a not in merged]
    if merged:
        runs.insert(0, tuple(merged))
    summaries = []
    for i, args in enumerate(runs):
        name = "baseline.log" if i == 0 else f"baseline-{i}.log"
        rc, seconds, tail = _pytest(tree, args, timeout, log_dir / name if log_dir else None)
        summaries.append(f"{tail} ({seconds:.0f} s)")
        if rc != 0:
            return False, "; ".join(summaries)
    return True, "; ".join(summaries)


def _run_one(mutant: Mutant, tree: Path, timeout: float, log_dir: Path | None) -> MutantResult:
    error = snippet_error(mutant, tree)
    if error:
        return MutantResult(mutant, Outcome.ERROR, 0.0, error)
    path = tree / mutant.file
    original = path.read_text()
    try:
        path.write_text(mutate(mutant, original))
        rc, seconds, tail = _pytest(tree, mutant.tests, timeout,
                                    log_dir / f"{mutant.name}.log" if log_dir else None)
    finally:
        path.write_text(original)
    if path.read_text() != original:      # pragma: no cover - the write above failed
        raise RuntimeError(f"could not restore {path} after mutant {mutant.name}")
    outcome = _classify(rc)
    log.debug("mutant %s: pytest exit code %s in %.1f s", mutant.name, rc, seconds)
    detail = f"no answer within {timeout:.0f} s" if rc is None else tail
    if outcome == Outcome.ERROR:
        detail = f"pytest exit code {rc}: {tail}"
    return MutantResult(mutant, outcome, seconds, detail)


def run_mutants(mutants: Sequence[Mutant], trees: Sequence[Path], *, timeout: float, log_dir: Path | None = None,
                ) -> Iterator[MutantResult]:
    """Run each mutant in one of the scratch copies ``trees`` (one worker per copy); yield results
    as they finish. Every copy is back to its original content when a result is yielded."""
    free: queue.Queue[Path] = queue.Queue()
    for t in trees:
        free.put(t)
    lock = threading.Lock()

    def work(m: Mutant) -> MutantResult:
        tree = free.get()
        try:
            return _run_one(m, tree, timeout, log_dir)
        finally:
            with lock:
                free.put(tree)

    pool = ThreadPoolExecutor(max_workers=len(trees))
    try:
        futures = [pool.submit(work, m) for m in mutants]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        # Interrupted (Ctrl-C, or the caller stopped early): drop the queued mutants and stop the
        # running pytest sessions rather than wait for them.
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_live()
        pool.shutdown(wait=True)


# -- command line ---------------------------------------------------------------------------------

def _table(results: Sequence[MutantResult]) -> str:
    width = max(len(r.mutant.name) for r in results)
    lines = [f"{'mutant':<{width}}  {'kind':<8}  {'outcome':<8}  {'s':>5}  caught by / detail",
             f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 5}  {'-' * 40}"]
    for r in results:
        what = " ".join(r.mutant.tests) if r.killed else r.detail
        lines.append(f"{r.mutant.name:<{width}}  {r.mutant.kind:<8}  {r.outcome:<8}  {r.seconds:>5.1f}  {what}")
    return "\n".join(lines)


def _list(mutants: Sequence[Mutant]) -> str:
    lines = []
    for m in mutants:
        lines.append(f"{m.name}  [{m.kind}] {m.file}: {m.bug}")
        lines.append(f"    caught by: {' '.join(m.tests)}")
    kinds = {k: sum(m.kind == k for m in mutants) for k in ("gateware", "model")}
    lines.append(f"{len(mutants)} mutants: {kinds['gateware']} gateware, {kinds['model']} model")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, mutants: Sequence[Mutant] = MUTANTS, root: Path = REPO_ROOT,
         out: Callable[[str], None] = print) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.flows.mutants",
                                 description="Apply deliberate bugs to the gateware and the golden model one at a "
                                             "time and check that the tests catch each of them.")
    ap.add_argument("--list", action="store_true", help="print the mutant table and exit")
    ap.add_argument("--only", action="append", metavar="NAME", default=[],
                    help="run only this mutant (repeat, or comma-separate, for several)")
    ap.add_argument("--jobs", type=int, default=1, metavar="N",
                    help="mutants run in parallel, each in its own scratch copy (default 1)")
    ap.add_argument("--timeout", type=float, default=600.0, metavar="S",
                    help="seconds a mutant's tests may take before it counts as a timeout (default 600)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    ap.add_argument("--log-dir", type=Path, default=root / "build" / "mutants",
                    help="where the per-mutant pytest logs and results.json go (default build/mutants)")
    args = ap.parse_args(argv)

    selected = list(mutants)
    if args.only:
        wanted = [n.strip() for arg in args.only for n in arg.split(",") if n.strip()]
        by_name = {m.name: m for m in mutants}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            ap.exit(2, f"error: unknown mutant(s) {', '.join(unknown)}; `--list` shows them all\n")
        selected = [by_name[n] for n in dict.fromkeys(wanted)]
    if args.jobs < 1:
        ap.exit(2, f"error: --jobs must be at least 1, not {args.jobs}\n")
    if args.timeout <= 0:
        ap.exit(2, f"error: --timeout must be positive, not {args.timeout}\n")
    if args.list:
        out(_list(selected))
        return 0

    t0 = time.monotonic()
    results: list[MutantResult] = []
    jobs = min(args.jobs, len(selected))
    with tempfile.TemporaryDirectory(prefix="secnic-mutants-") as tmp:
        trees = [copy_tree(root, Path(tmp) / f"w{i}") for i in range(jobs)]
        try:
            check_imports_from(trees[0], (m.file.split("/")[0] for m in selected))
        except RuntimeError as exc:
            out(f"error: {exc}")
            return 1
        if not args.no_baseline:
            ok, summary = run_baseline(trees[0], selected, args.timeout * 2, args.log_dir)
            out(f"baseline (unmutated): {summary}")
            if not ok:
                out(f"error: the selected tests fail without any mutant (see {args.log_dir / 'baseline.log'}); "
                    "fix them first")
                return 1
        for r in run_mutants(selected, trees, timeout=args.timeout, log_dir=args.log_dir):
            results.append(r)
            out(f"[{len(results):>2}/{len(selected)}] {r.outcome:<8} {r.mutant.name} ({r.seconds:.1f} s)"
                + ("" if r.killed else f": {r.detail}"))
    wall = time.monotonic() - t0
    order = {m.name: i for i, m in enumerate(selected)}
    results.sort(key=lambda r: order[r.mutant.name])
    killed = sum(r.killed for r in results)
    out("")
    out(_table(results))
    kinds = {k: (sum(r.killed for r in results if r.mutant.kind == k), sum(r.mutant.kind == k for r in results))
             for k in ("gateware", "model")}
    out(f"\nkilled {killed}/{len(results)} (gateware {kinds['gateware'][0]}/{kinds['gateware'][1]}, "
        f"model {kinds['model'][0]}/{kinds['model'][1]}) in {wall:.0f} s wall, --jobs {jobs}")
    args.log_dir.mkdir(parents=True, exist_ok=True)
    summary = {"killed": killed, "total": len(results), "wall_s": round(wall, 1), "jobs": jobs,
               "mutants": [{"name": r.mutant.name, "kind": r.mutant.kind, "file": r.mutant.file,
                            "outcome": r.outcome, "seconds": round(r.seconds, 1), "detail": r.detail}
                           for r in results]}
    (args.log_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    bad = [r for r in results if not r.killed]
    if bad:
        out(f"{len(bad)} mutant(s) not killed: {', '.join(r.mutant.name for r in bad)} "
            f"(logs in {args.log_dir})")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the working tree was never modified; scratch copies removed", file=sys.stderr)
        sys.exit(130)

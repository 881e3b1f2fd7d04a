"""``secnic calibrate``: measure the software path's per-hop costs on this machine.

Three measurements of real software, each repeated :data:`REPEATS` times at two frame sizes (60 and
1514 bytes) so a per-packet and a per-byte cost come out of a straight line:

* **vswitch**: Open vSwitch's userspace datapath (``datapath_type=netdev``, veth ports through
  AF_PACKET, no DPDK) forwarding between two network namespaces. ``tcpreplay --topspeed`` sends from
  one namespace; the cost is ovs-vswitchd's CPU time (utime + stime from /proc) per frame that
  arrived in the other namespace (its veth counter).
* **firewall**: a Linux bridge in its own namespace with an nftables ``bridge`` table whose forward
  chain holds the scenario's header rules as nftables rules (:func:`nft_rules`). With interrupt time
  accounting off (this kernel), the bridge and nftables run in softirq inline in the sender's
  context, so the cost is tcpreplay's CPU time (plus the ksoftirqd threads') per frame: measured
  without the table, with an empty chain and with the rules; the differences give nftables'
  per-packet and per-rule cost.
* **ids_match**: Hyperscan (the matcher inside Suricata) in block mode over the content literals of
  the rules, scanning the payloads of the scenario's frames. Calls from Python carry the binding's
  overhead, so the per-packet figure is an upper bound.

Every namespace, veth and daemon is created under a unique prefix and removed at the end (also on
error or Ctrl-C); the host's own interfaces are never touched. Figures not measured here
(virtio crossings, the guest's packet I/O, Suricata's per-packet work beyond matching, the interrupt
wake-up) come from the shipped calibration, with their sources (docs/performance.md).

Without root (no CAP_NET_ADMIN) the OVS and nftables figures cannot be measured: that is said, and
those figures are taken from the shipped calibration, marked as such.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sim.compare.costs import load_calibration
from sim.compare.scenario import DEFAULT_CALIBRATION
from sim.compare.traffic import ipv4_checksum

__all__ = ["calibrate", "machine_info", "nft_rules", "rule_literals", "measure_hyperscan", "measure_ovs",
           "measure_nftables", "CalibrationUnavailable", "REPEATS", "SIZES"]

log = logging.getLogger(__name__)

REPEATS = 3
SIZES = (60, 1514)
#: Frames sent per OVS / bridge run (tcpreplay loops its capture to reach it).
FRAMES_PER_RUN = 200_000
#: Offered rate of the OVS runs: below what ovs-vswitchd forwards on one core here, so it is not
#: overloaded (at --topspeed the sender and OVS fight for the two cores and the CPU per forwarded
#: frame swung between 3.7 and 16 us: measured 2026-12-07).
OVS_PPS = 100_000
#: Relative uncertainty never stated below this: the machine is shared and runs drift.
MIN_REL_UNCERTAINTY = 0.15


class CalibrationUnavailable(RuntimeError):
    """A measurement cannot run here (no root, a tool missing); the message says which."""


def _sh(*cmd, ns: str | None = None, check=True, **kw) -> subprocess.CompletedProcess:
    """Run a command (in namespace ``ns``); a failure raises :class:`CalibrationUnavailable` with its stderr."""
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(c) for c in cmd]
    log.debug("$ %s", " ".join(full))
    res = subprocess.run(full, check=False, capture_output=True, text=True, **kw)
    if check and res.returncode:
        raise CalibrationUnavailable(f"`{' '.join(full)}` failed (exit {res.returncode}): {res.stderr.strip()[-400:]}")
    return res


def machine_info() -> dict:
    """The machine the figures belong to."""
    model, mhz = "unknown", None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    clock = float(m.group(1)) if m else round((mhz or 2500.0) / 1000, 3)

    def version(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None
    try:
        import hyperscan
        hs_version = getattr(hyperscan, "__version__", None) or "installed"
    except ImportError:
        hs_version = None
    return {"cpu": model, "clock_ghz": clock, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "tools": {"ovs-vswitchd": version(["ovs-vswitchd", "--version"]), "nft": version(["nft", "--version"]),
                      "tcpreplay": version(["tcpreplay", "-V"]), "hyperscan (PyPI)": hs_version}}


def _fit(points: dict[int, list[float]]) -> dict:
    """Per-packet and per-byte cost (ns) from per-frame costs at two sizes, with uncertainties from
    the spread of the repeats."""
    (s0, c0), (s1, c1) = sorted(points.items())
    m0, m1 = statistics.fmean(c0), statistics.fmean(c1)
    e0 = statistics.stdev(c0) if len(c0) > 1 else m0 * MIN_REL_UNCERTAINTY
    e1 = statistics.stdev(c1) if len(c1) > 1 else m1 * MIN_REL_UNCERTAINTY
    per_byte = max(0.0, (m1 - m0) / (s1 - s0))
    per_byte_err = (e0 ** 2 + e1 ** 2) ** 0.5 / (s1 - s0)
    per_packet = max(0.0, m0 - per_byte * s0)
    return {"per_packet_ns": _fig(per_packet, e0 + per_byte_err * s0),
            "per_byte_ns": _fig(per_byte, per_byte_err, floor=0.05 * per_byte + 0.001),
            "samples_ns_per_frame": {str(s): [round(x, 2) for x in c] for s, c in sorted(points.items())}}


def _fig(value: float, err: float, floor: float | None = None) -> dict:
    """A figure with its uncertainty: twice the measured spread, never below :data:`MIN_REL_UNCERTAINTY`."""
    floor = MIN_REL_UNCERTAINTY * value if floor is None else floor
    return {"value": round(value, 4), "uncertainty": round(max(2 * err, floor, MIN_REL_UNCERTAINTY * value), 4)}


# -- rules -> literals, nftables ----------------------------------------------------------------------

def rule_literals(rules) -> list[tuple[bytes, bool]]:
    """(literal, nocase) of every ``content`` of the rules (``|hex|`` escapes decoded)."""
    out = []
    for r in rules:
        nocase = "nocase" in r.text
        for m in re.finditer(r'content\s*:\s*"((?:[^"\\]|\\.)*)"', r.text):
            raw, lit, i = m.group(1), bytearray(), 0
            parts = raw.split("|")
            for k, part in enumerate(parts):
                if k % 2:
                    lit += bytes.fromhex(part)
                else:
                    lit += re.sub(r"\\(.)", r"\1", part).encode()
            del i
            if lit:
                out.append((bytes(lit), nocase))
    return out


def nft_rules(rules) -> tuple[list[str], int]:
    """nftables rule lines (bridge family, forward chain) for the header rules that nftables can
    express (IPv4 addresses, TCP/UDP ports, ICMP), and how many rules had to be left out. Every rule
    becomes a ``counter`` rule, so a frame walks the whole chain (the worst case the hop pays)."""
    lines, skipped = [], 0
    for r in rules:
        if r.verdict != "offloaded":
            continue
        if r.v6_only if hasattr(r, "v6_only") else False:
            skipped += 1
            continue
        expr = []
        proto = {"tcp": "tcp", "udp": "udp", "icmp": "icmp"}.get(r.proto)
        for field, aset in (("saddr", r.src), ("daddr", r.dst)):
            nets = aset.networks(4)
            if not nets:
                break
            if not (len(nets) == 1 and nets[0].prefixlen == 0):
                expr.append(f"ip {field} {{ {', '.join(map(str, nets[:64]))} }}")
        else:
            if proto in ("tcp", "udp"):
                for field, pset in (("sport", r.sport), ("dport", r.dport)):
                    if not pset.is_full():
                        ranges = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in pset.intervals[:64]]
                        expr.append(f"{proto} {field} {{ {', '.join(ranges)} }}")
                if not any(e.startswith(proto) for e in expr):
                    expr.append(f"meta l4proto {proto}")
            elif proto == "icmp":
                expr.append("meta l4proto icmp")
            lines.append(" ".join(["ether type ip"] + expr + ["counter"]))
            continue
        skipped += 1
    return lines, skipped


# -- measurements -----------------------------------------------------------------------------------

def measure_hyperscan(literals: list[tuple[bytes, bool]], payload_seed: int = 1, frames: int = 20_000) -> dict:
    """Hyperscan block-mode scans over random payloads of each size (:data:`SIZES`)."""
    import random

    import hyperscan
    if not literals:
        literals = [(b"secnic", False)]
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    exprs = [b"".join(b"\\x%02x" % c for c in lit) for lit, _ in literals]
    flags = [hyperscan.HS_FLAG_CASELESS if nc else 0 for _, nc in literals]
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    rng = random.Random(payload_seed)
    points: dict[int, list[float]] = {}
    for size in SIZES:
        bufs = [rng.randbytes(size) for _ in range(256)]
        points[size] = []
        for _ in range(REPEATS):
            t0 = time.thread_time_ns()       # CPU time: time spent descheduled on a shared machine is not cost
            for i in range(frames):
                db.scan(bufs[i & 255])
            points[size].append((time.thread_time_ns() - t0) / frames)
    fit = _fit(points)
    fit.update({"source": "measured", "literals": len(literals),
                "command": f"hyperscan.Database(HS_MODE_BLOCK) over {len(literals)} content literals; "
                           f"db.scan() of {frames} random payloads x {REPEATS} at {SIZES} bytes"})
    return fit


def _cpu_ns(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") * 1e9


def _threads_cpu_ns(pid: int) -> float:
    """CPU time of a process, all its threads (utime + stime of the process covers them)."""
    return _cpu_ns(pid)


def _ksoftirqd_ns() -> float:
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if (d / "comm").read_text().startswith("ksoftirqd"):
                    total += _cpu_ns(int(d.name))
    return total


def _rx_packets(ns: str, dev: str) -> int:
    return int(_sh("cat", f"/sys/class/net/{dev}/statistics/rx_packets", ns=ns).stdout)


def _write_pcap(path: Path, size: int, count: int = 1000) -> None:
    """A pcap of UDP frames of ``size`` bytes, 10.99.0.1 to 10.98.x.y, port 40000 -> 9 (no rule drops them)."""
    import struct
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            ip_len = size - 14
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, i & 0xFFFF, 0, 64, 17, 0,
                             bytes((10, 99, 0, 1)), bytes((10, 98, i >> 8 & 0xFF, i & 0xFF)))
            # A valid header checksum: br_netfilter, when loaded, drops bridged IPv4 without one.
            ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
            udp = struct.pack("!HHHH", 40000, 9, ip_len - 20, 0)
            frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
            frame += bytes(size - len(frame))
            f.write(struct.pack("<IIII", 0, i, len(frame), len(frame)) + frame)


class _Netns:
    """Namespaces and veth pairs under one unique prefix, all removed on exit."""

    def __init__(self):
        self.prefix = f"snc{os.getpid() % 100000}"
        self.namespaces: list[str] = []

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        _sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        _sh("ip", "link", "set", "lo", "up", ns=full)
        return full

    def veth(self, a_ns: str, a: str, b_ns: str, b: str) -> tuple[str, str]:
        a, b = f"{self.prefix}{a}", f"{self.prefix}{b}"
        _sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
        for ns, dev in ((a_ns, a), (b_ns, b)):
            _sh("ip", "link", "set", dev, "up", ns=ns)
            _sh("ip", "link", "set", dev, "mtu", "1600", ns=ns)
        return a, b

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for ns in reversed(self.namespaces):
            _sh("ip", "netns", "del", ns, check=False)      # deleting a namespace deletes its veths


def _replay(ns: str, dev: str, pcap: Path, frames: int, pps: int | None = None) -> float:
    """Send ``frames`` from ``pcap`` (looped) at ``pps`` frames per second (None: as fast as possible);
    return tcpreplay's CPU ns."""
    loops = max(1, frames // 1000)
    rate = f"--pps={pps}" if pps else "--topspeed"
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpreplay", "-q", rate, f"--loop={loops}",
                             f"--intf1={dev}", str(pcap)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # CPU time of the child (ip netns exec execs tcpreplay in place: same pid).
    cpu = 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            cpu = _cpu_ns(proc.pid)
        time.sleep(0.02)
    if proc.returncode:
        raise CalibrationUnavailable(f"tcpreplay failed: {proc.stderr.read().decode()[-300:]}")
    return cpu


def _need(tool: str) -> None:
    if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
        package = {"ovs-vswitchd": "openvswitch-switch", "ovsdb-server": "openvswitch-switch"}.get(tool, tool)
        raise CalibrationUnavailable(f"{tool} not found (Debian: apt-get install {package}; `make setup` does it)")


def _check_root() -> None:
    if os.geteuid() != 0:
        raise CalibrationUnavailable("not root: creating network namespaces and veth pairs needs CAP_NET_ADMIN")


def measure_ovs(frames: int = FRAMES_PER_RUN, step: Callable[[str], None] | None = None) -> dict:
    """OVS userspace datapath between two namespaces (module docstring)."""
    try:
        return _measure_ovs(frames, step)
    except subprocess.CalledProcessError as exc:
        why = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
        raise CalibrationUnavailable(f"`{' '.join(map(str, exc.cmd))}` failed: {why.strip()[-300:]}") from None


def _measure_ovs(frames: int, step: Callable[[str], None] | None) -> dict:
    _check_root()
    for tool in ("ovs-vswitchd", "ovsdb-server", "tcpreplay"):
        _need(tool)
    points: dict[int, list[float]] = {s: [] for s in SIZES}
    forwarded_share = []
    with _Netns() as net, tempfile.TemporaryDirectory(prefix="secnic-cal-ovs-") as d:
        a, b, sw = net.ns("a"), net.ns("b"), net.ns("sw")
        a0, a1 = net.veth(a, "a0", sw, "a1")
        b0, b1 = net.veth(b, "b0", sw, "b1")
        env = {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d, "OVS_SYSCONFDIR": d}
        db = f"unix:{d}/db.sock"

        def vsctl(*args):
            return subprocess.run(["ovs-vsctl", f"--db={db}", *args], env=env, check=True, capture_output=True,
                                  text=True)
        subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"],
                       env=env, check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", sw, "ovsdb-server", "--detach", "--no-chdir", f"--pidfile={d}/db.pid",
                        f"--remote=punix:{d}/db.sock", f"{d}/conf.db"], env=env, check=True, capture_output=True)
        try:
            vsctl("--no-wait", "init")
            subprocess.run(["ip", "netns", "exec", sw, "ovs-vswitchd", "--disable-system", "--detach", "--no-chdir",
                            f"--pidfile={d}/vs.pid", f"--log-file={d}/vs.log", db], env=env, check=True,
                           capture_output=True)
            vs_pid = int(Path(f"{d}/vs.pid").read_text())
            vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure",
                  "--", "add-port", "br0", a1, "--", "add-port", "br0", b1)
            subprocess.run(["ovs-ofctl", "add-flow", f"unix:{d}/br0.mgmt", f"in_port={a1},actions=output:{b1}"],
                           env=env, check=True, capture_output=True)
            time.sleep(1.0)
            for size in SIZES:
                pcap = Path(d) / f"f{size}.pcap"
                _write_pcap(pcap, size)
                for rep in range(REPEATS):
                    if step:
                        step(f"ovs {size} B #{rep + 1}")
                    rx0, cpu0 = _rx_packets(b, b0), _threads_cpu_ns(vs_pid)
                    _replay(a, a0, pcap, frames, OVS_PPS)
                    time.sleep(0.3)                       # let the datapath drain
                    rx1, cpu1 = _rx_packets(b, b0), _threads_cpu_ns(vs_pid)
                    got = rx1 - rx0
                    if got < frames // 20:
                        raise CalibrationUnavailable(f"OVS forwarded only {got} of {frames} frames; see {d}/vs.log")
                    points[size].append((cpu1 - cpu0) / got)
                    forwarded_share.append(got / frames)
        finally:
            for pidfile in ("vs.pid", "db.pid"):
                with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                    os.kill(int(Path(d, pidfile).read_text()), 15)
            time.sleep(0.3)
    fit = _fit(points)
    fit.update({"source": "measured", "offered_pps": OVS_PPS,
                "forwarded_share": [round(x, 3) for x in forwarded_share],
                "command": "ovs-vswitchd --disable-system in its own netns, bridge datapath_type=netdev with veth "
                           f"ports a1, b1 and flow in_port=a1,actions=output:b1; tcpreplay --pps={OVS_PPS} of {frames} "
                           f"UDP frames at {SIZES} bytes from netns a; ovs-vswitchd utime+stime / rx_packets of b0"})
    return fit


def measure_nftables(rule_lines: list[str], frames: int = FRAMES_PER_RUN,
                     step: Callable[[str], None] | None = None) -> dict:
    """A Linux bridge with and without an nftables forward chain (module docstring)."""
    _check_root()
    for tool in ("nft", "tcpreplay"):
        _need(tool)
    configs = ("bridge", "empty_chain", "rules")
    points: dict[str, list[float]] = {c: [] for c in configs}
    with _Netns() as net, tempfile.TemporaryDirectory(prefix="secnic-cal-nft-") as d:
        a, b, fw = net.ns("a"), net.ns("b"), net.ns("fw")
        a0, a1 = net.veth(a, "a0", fw, "a1")
        b0, b1 = net.veth(b, "b0", fw, "b1")
        _sh("ip", "link", "add", "br0", "type", "bridge", "ageing_time", "0", ns=fw)
        for dev in (a1, b1):
            _sh("ip", "link", "set", dev, "master", "br0", ns=fw)
        _sh("ip", "link", "set", "br0", "up", ns=fw)
        pcap = Path(d) / "f60.pcap"
        _write_pcap(pcap, SIZES[0])
        ruleset = Path(d) / "rules.nft"
        head = "table bridge secnic {\n chain secnic_fwd {\n  type filter hook forward priority 0; policy accept;\n"
        ruleset.write_text(head + "".join(f"  {line}\n" for line in rule_lines) + " }\n}\n")
        empty = Path(d) / "empty.nft"
        empty.write_text(head + " }\n}\n")
        for rep in range(REPEATS):
            for cfg in configs:
                _sh("nft", "flush", "ruleset", ns=fw)
                if cfg != "bridge":
                    _sh("nft", "-f", empty if cfg == "empty_chain" else ruleset, ns=fw)
                if step:
                    step(f"nftables {cfg} #{rep + 1}")
                rx0, soft0 = _rx_packets(b, b0), _ksoftirqd_ns()
                cpu = _replay(a, a0, pcap, frames)
                time.sleep(0.2)
                got = _rx_packets(b, b0) - rx0
                soft = _ksoftirqd_ns() - soft0
                if got < frames // 20:
                    raise CalibrationUnavailable(f"the bridge forwarded only {got} of {frames} frames ({cfg})")
                points[cfg].append((cpu + soft) / got)
    m = {c: statistics.fmean(v) for c, v in points.items()}
    e = {c: (statistics.stdev(v) if len(v) > 1 else m[c] * MIN_REL_UNCERTAINTY) for c, v in points.items()}
    n = max(1, len(rule_lines))
    per_packet = max(0.0, m["empty_chain"] - m["bridge"])
    per_rule = max(0.0, (m["rules"] - m["empty_chain"]) / n)
    return {
        "per_packet_ns": _fig(per_packet, (e["empty_chain"] ** 2 + e["bridge"] ** 2) ** 0.5, floor=50.0),
        "per_rule_ns": _fig(per_rule, (e["rules"] ** 2 + e["empty_chain"] ** 2) ** 0.5 / n, floor=1.0),
        "bridge_ns_per_frame": _fig(m["bridge"], e["bridge"]),
        "samples_ns_per_frame": {c: [round(x, 1) for x in v] for c, v in points.items()},
        "rules": len(rule_lines), "source": "measured",
        "command": f"netns fw: Linux bridge br0 (veth a1, b1); nft -f with table bridge secnic, chain secnic_fwd "
                   f"hook forward priority 0 holding {len(rule_lines)} rules (counter each) vs an empty chain vs "
                   "no table; "
                   f"tcpreplay --topspeed of {frames} 60-byte UDP frames from netns a; (tcpreplay + ksoftirqd "
                   "utime+stime) / rx_packets of b0",
    }


def calibrate(out: Path, rules=(), *, shipped: Path = DEFAULT_CALIBRATION,
              step: Callable[[str], None] | None = None, frames: int = FRAMES_PER_RUN) -> dict:
    """Run every measurement that can run here, fill the rest from ``shipped``, write ``out`` (JSON)."""
    base = load_calibration(shipped)
    figures = {k: dict(v) for k, v in base["figures"].items()}
    notes = []
    for key in figures:
        figures[key].setdefault("source", "shipped")
    literals = rule_literals(rules)
    if step:
        step("hyperscan")
    hs = measure_hyperscan(literals)
    details = {"ids_match": hs}
    figures["ids_match.per_packet_ns"] = {**hs["per_packet_ns"], "source": "measured", "command": hs["command"]}
    figures["ids_match.per_byte_ns"] = {**hs["per_byte_ns"], "source": "measured", "command": hs["command"]}
    try:
        ovs = measure_ovs(frames, step)
        details["vswitch"] = ovs
        for k in ("per_packet_ns", "per_byte_ns"):
            figures[f"vswitch.{k}"] = {**ovs[k], "source": "measured", "command": ovs["command"]}
    except CalibrationUnavailable as exc:
        notes.append(f"vswitch: not measured ({exc}); figures from {shipped}")
        figures["vswitch.per_packet_ns"]["source"] = figures["vswitch.per_byte_ns"]["source"] = f"shipped ({exc})"
    lines, skipped = nft_rules(rules)
    try:
        nft = measure_nftables(lines, frames, step)
        details["firewall"] = nft
        for k in ("per_packet_ns", "per_rule_ns"):
            figures[f"firewall.{k}"] = {**nft[k], "source": "measured", "command": nft["command"]}
        if skipped:
            notes.append(f"firewall: {skipped} header rule(s) not expressible as nftables rules were left out")
    except CalibrationUnavailable as exc:
        notes.append(f"firewall: not measured ({exc}); figures from {shipped}")
        figures["firewall.per_packet_ns"]["source"] = figures["firewall.per_rule_ns"]["source"] = f"shipped ({exc})"
    doc = {
        "format": "secnic-calibration/1",
        "measured_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "figures": figures,
        "measurements": details,
        "notes": notes,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)
    return doc

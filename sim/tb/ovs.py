"""Open vSwitch as the reference switch (issue 13): OVS's NORMAL pipeline, run without any kernel module.

OVS runs here the way its own test suite runs it (tests/ofproto-macros.at, OVS_VSWITCHD_START):
``ovsdb-server`` and ``ovs-vswitchd --enable-dummy=override --disable-system`` on a private run
directory, one bridge ``br0`` with ``datapath_type=dummy`` and ``fail-mode=standalone`` (so its
only flow is NORMAL: MAC learning and VLANs), one ``type=dummy`` interface per port whose
``options:tx_pcap`` file records every frame OVS sends out of it. Frames go in with
``netdev-dummy/receive PORT HEX``; the MAC table comes from ``fdb/show``. Nothing of the system's
own OVS is touched: every file, socket and pid file lives in the work directory
(``OVS_RUNDIR``/``OVS_LOGDIR``/``OVS_DBDIR``/``OVS_SYSCONFDIR`` point there).

How one frame is handled (:meth:`OvsSwitch.send`), and why:

* The harness talks JSON-RPC to ovs-vswitchd's unixctl socket itself (what ``ovs-appctl`` does),
  over one connection, instead of starting an ``ovs-appctl`` process per command.
* ``netdev-dummy/receive`` only queues the frame and replies. The dummy ports are polled by
  ovs-vswitchd's main thread, which also answers unixctl commands, and it receives, looks up
  (upcall, MAC learning, NORMAL) and transmits one frame in one uninterrupted call. So once a
  ``dpctl/show -s`` answer shows the port's RX counter advanced, the frame is finished and its
  copies are flushed in the tx_pcap files (OVS fflushes after every record). Measured: the reply
  to ``receive`` often comes back before the frame was processed, so this wait is needed.
* The datapath flows are flushed after every frame, so every frame takes the slow path (a fresh
  NORMAL lookup against the current MAC table). Needed: measured without it, A->B (flooded, B
  unknown), B->A (B learned), A->B again was flooded a second time by the datapath flow cached
  from the first frame, because revalidation after a MAC table change runs later in another
  thread. ``revalidator/purge`` does it (as in OVS's tests), not ``dpctl/del-flows``: that one
  removes the flows behind the revalidator's back, which then logs "failed to put[modify]" and
  "ukey installation fails" warnings (forwarding was the same with either; purge costs about
  20 % of the rate).
* Frames shorter than 60 bytes are passed to OVS as they are: OVS neither pads nor drops them
  (a 14-byte header-only frame goes through); below 14 bytes OVS cannot take a frame at all and
  :meth:`OvsSwitch.send` raises ValueError. OVS does not pad on egress either: a 60-byte tagged
  frame leaves an access port as 56 bytes.
* Each interface gets ``mtu_request`` so that frames up to :data:`hdl.config.MAX_FRAME` bytes
  (+4 when tagged) leave it: the dummy netdev drops longer frames on transmit (its default MTU
  is 1500).

Speed, measured on the 2-core machine shared with other jobs (``test_send_rate`` in
tests/switch/test_ovs_reference.py, 500 frames): 2,000-3,200 frames/s through
:meth:`OvsSwitch.send` (the same three commands as ``ovs-appctl`` processes: 116 frames/s); start-up of
both daemons and the bridge about 0.1 s. :meth:`OvsSwitch.send_all` sends one frame at a time:
several frames in one ``receive`` would share datapath passes (per-port polling, flows cached
between them) and lose the one-frame-at-a-time ordering that learning depends on.

Runs as root or as an ordinary user (the programs are looked up in /usr/sbin too).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hdl.config import MAX_FRAME
from sim.run.pcapio import read_pcap

__all__ = ["OvsPort", "OvsMirror", "OvsSwitch", "OvsError", "ovs_unavailable", "OVS_SCHEMA"]

log = logging.getLogger(__name__)

#: The database schema Debian's openvswitch-common installs.
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
_PROGRAMS = ("ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-vswitchd")
_BRIDGE = "br0"
_VLAN_IDS = range(1, 4095)          # 0 means untagged/priority-tagged; 4095 is reserved (802.1Q)
_TIMEOUT_S = 30.0                   # any single OVS command or wait; far above what one takes
_LOG_TAIL_LINES = 20


class OvsError(RuntimeError):
    """OVS could not be started or did not answer as expected (the message carries its log's tail)."""


@dataclass(frozen=True)
class OvsPort:
    """One switch port as secnic's config describes it, mapped onto an OVS port.

    Parameters
    ----------
    name:
        Port and interface name in OVS, e.g. ``"phy0"``, ``"vm1"``.
    mode:
        ``"access"`` (untagged, one VLAN) or ``"trunk"`` (802.1Q tagged).
    vlan:
        Access: the port's VLAN. Trunk: its native VLAN (untagged frames belong to it and leave
        untagged); ``None`` for a trunk without a native VLAN (untagged frames are dropped).
    trunks:
        Trunk only: the VLANs it carries, ``None`` for all of them. A native VLAN is carried
        whether or not it is listed (OVS adds it).
    """

    name: str
    mode: str = "access"
    vlan: int | None = 1
    trunks: tuple[int, ...] | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.name or ""):
            raise ValueError(f"OVS port name must be 1-15 letters, digits, '_', '.' or '-', not {self.name!r}")
        if self.mode not in ("access", "trunk"):
            raise ValueError(f"port {self.name}: mode must be 'access' or 'trunk', not {self.mode!r}")
        if self.mode == "access" and self.vlan is None:
            raise ValueError(f"port {self.name}: an access port needs a VLAN")
        if self.vlan is not None and self.vlan not in _VLAN_IDS:
            raise ValueError(f"port {self.name}: VLAN must be 1..4094, not {self.vlan!r}")
        if self.trunks is not None:
            if self.mode != "trunk":
                raise ValueError(f"port {self.name}: trunks are for trunk ports, not {self.mode} ports")
            bad = [v for v in self.trunks if v not in _VLAN_IDS]
            if bad or not self.trunks:
                raise ValueError(f"port {self.name}: trunks must be VLANs 1..4094, not {self.trunks!r}")

    def ovs_settings(self) -> list[str]:
        """The ``ovs-vsctl set port NAME ...`` column settings for this port."""
        if self.mode == "access":
            return [f"tag={self.vlan}", "vlan_mode=access"]
        if self.vlan is not None:
            # native-untagged: untagged frames join VLAN `tag`, which leaves untagged. OVS adds
            # the native VLAN to `trunks` itself and never trunks VLAN 0 on such a port.
            settings = [f"tag={self.vlan}", "vlan_mode=native-untagged"]
            if self.trunks is not None:
                settings.append("trunks=" + ",".join(map(str, sorted(set(self.trunks)))))
            return settings
        # OVS puts untagged and priority-tagged frames on a plain trunk in VLAN 0 and carries
        # them when `trunks` is empty (= every VLAN, 0 included); list 1..4094 so they drop.
        vlans = sorted(set(self.trunks)) if self.trunks is not None else list(_VLAN_IDS)
        return ["vlan_mode=trunk", "trunks=" + ",".join(map(str, vlans))]


def _program(name: str) -> str | None:
    """Full path of an OVS program: on PATH, or in /usr/sbin (not on a Debian user's PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


@dataclass(frozen=True)
class OvsMirror:
    """An OVS ``Mirror``: copies of the frames received on ``select_src`` ports and of those sent
    out of ``select_dst`` ports go to ``to``, which then carries no other traffic."""

    to: str
    select_src: tuple[str, ...] = ()
    select_dst: tuple[str, ...] = ()


def ovs_unavailable() -> str | None:
    """``None`` if Open vSwitch can run here, else the reason (for ``pytest.skip``)."""
    missing = [p for p in _PROGRAMS if _program(p) is None]
    if missing:
        return (f"Open vSwitch not installed ({', '.join(missing)} not found); "
                "`make setup` installs it as root, else: apt-get install openvswitch-switch")
    if not OVS_SCHEMA.is_file():
        return f"Open vSwitch database schema {OVS_SCHEMA} not found"
    return None


def _running(pid: int) -> bool:
    """Whether process ``pid`` is alive (an exited daemon stays a zombie where init does not reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class _Unixctl:
    """JSON-RPC client of an OVS daemon's unixctl socket (what ``ovs-appctl`` speaks)."""

    def __init__(self, path: Path):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(_TIMEOUT_S)
        self._dirfd = None
        target = str(path)
        if len(target) > 100:       # sun_path holds 108 bytes; reach a deep path through its directory
            self._dirfd = os.open(path.parent, os.O_RDONLY)
            target = f"/proc/self/fd/{self._dirfd}/{path.name}"
        self._sock.connect(target)
        self._buf = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()   # a chunk may end inside a character
        self._next_id = 0
        self._decoder = json.JSONDecoder()

    def call(self, method: str, *params: str) -> str:
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": list(params)}
        self._sock.sendall(json.dumps(request).encode())
        while True:
            text = self._buf.lstrip()
            if text:
                try:
                    reply, end = self._decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass                            # incomplete: read more
                else:
                    self._buf = text[end:]
                    if reply.get("id") != self._next_id:
                        raise OvsError(f"unixctl reply out of order: {reply!r}")
                    if reply.get("error") is not None:
                        raise OvsError(f"ovs-appctl {method} {' '.join(params)[:200]}: {reply['error']}")
                    return reply["result"]
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise OvsError(f"ovs-vswitchd closed its control socket during {method}")
            self._buf += self._utf8.decode(chunk)

    def close(self):
        self._sock.close()
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None


class OvsSwitch:
    """Open vSwitch's NORMAL pipeline (MAC learning, VLANs) in the userspace dummy datapath,
    in a private run directory; frames in with netdev-dummy/receive, out from each port's tx_pcap.

    Parameters
    ----------
    workdir:
        Private directory for the database, sockets, logs, pid files and one ``NAME.pcap`` per
        port (created if missing). Two switches must not share it.
    ports:
        The ports, in order (OpenFlow port numbers 1, 2, ... in that order).
    mac_aging_s:
        ``other_config:mac-aging-time`` of the bridge, 15..3600 s (OVS default 300 s).
    mac_table_size:
        ``other_config:mac-table-size``, 10..1,000,000; ``None`` keeps OVS's default (8192).
        When the table is full, a new MAC evicts the least recently used entry of the port that
        has the most entries.
    mirrors:
        :class:`OvsMirror` sessions (SPAN), set up after the ports.

    Use it as a context manager, or call :meth:`close`: the two daemons run until then.
    """

    def __init__(self, workdir: Path, ports: Sequence[OvsPort], *, mac_aging_s: int = 300,
                 mac_table_size: int | None = None, mirrors: Sequence[OvsMirror] = ()):
        reason = ovs_unavailable()
        if reason:
            raise OvsError(reason)
        if not ports:
            raise ValueError("an OVS switch needs at least one port")
        names = [p.name for p in ports]
        if len(set(names)) != len(names) or _BRIDGE in names:
            raise ValueError(f"port names must be distinct and not {_BRIDGE!r}: {names}")
        # OVS silently clamps both (lib/mac-learning.c); refuse rather than run another setting.
        if not 15 <= mac_aging_s <= 3600:
            raise ValueError(f"mac_aging_s must be 15..3600 (OVS's range), not {mac_aging_s!r}")
        if mac_table_size is not None and not 10 <= mac_table_size <= 1_000_000:
            raise ValueError(f"mac_table_size must be 10..1000000 (OVS's range), not {mac_table_size!r}")
        self.workdir = Path(workdir).resolve()
        self.ports = tuple(ports)
        self.mirrors = tuple(mirrors)
        for m in self.mirrors:
            unknown = {m.to, *m.select_src, *m.select_dst} - set(names)
            if unknown:
                raise ValueError(f"mirror to {m.to!r} names unknown ports {sorted(unknown)}")
        self._by_ofport = {str(i): p.name for i, p in enumerate(self.ports, start=1)}
        self._by_ofport["LOCAL"] = _BRIDGE
        self._rx_done = dict.fromkeys(names, 0)
        self._ctl: _Unixctl | None = None
        self._started: list[str] = []         # pid files of the daemons this switch started
        self._closed = False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._env = dict(os.environ, OVS_RUNDIR=str(self.workdir), OVS_LOGDIR=str(self.workdir),
                         OVS_DBDIR=str(self.workdir), OVS_SYSCONFDIR=str(self.workdir))
        try:
            self._start(mac_aging_s, mac_table_size)
        except BaseException:
            self.close()
            raise

    # -- files ---------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.workdir / name

    def pcap_path(self, port: str) -> Path:
        """The tx_pcap file OVS writes the frames sent out of ``port`` to."""
        return self._path(f"{port}.pcap")

    # -- start and stop ------------------------------------------------------------------------
    def _run(self, *argv: str, log_file: str | None = None) -> str:
        try:
            done = subprocess.run([_program(argv[0]) or argv[0], *argv[1:]], env=self._env, cwd=self.workdir,
                                  capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise OvsError(f"{argv[0]} did not finish in {_TIMEOUT_S:.0f} s{self._log_tail(log_file)}") from exc
        if done.returncode != 0:
            raise OvsError(f"{' '.join(argv)[:300]} failed (exit {done.returncode}): "
                           f"{done.stderr.strip()}{self._log_tail(log_file)}")
        return done.stdout

    def _log_tail(self, log_file: str | None) -> str:
        if log_file is None or not self._path(log_file).is_file():
            return ""
        lines = self._path(log_file).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        return f"\n--- last lines of {self._path(log_file)} ---\n" + "\n".join(lines)

    def _start(self, mac_aging_s: int, mac_table_size: int | None) -> None:
        t0 = time.monotonic()
        for pid_file in ("ovsdb-server.pid", "ovs-vswitchd.pid"):
            if self._live_pid(pid_file) is not None:
                raise OvsError(f"an OVS daemon from {self._path(pid_file)} is still running in {self.workdir}")
        # A fresh database, logs and captures: only files this harness names.
        ours = ["conf.db", ".conf.db.~lock~", "ovsdb-server.log", "ovs-vswitchd.log"]
        for stale in ours + [f"{p.name}.pcap" for p in self.ports]:
            self._path(stale).unlink(missing_ok=True)
        db = f"unix:{self._path('db.sock')}"
        self._run("ovsdb-tool", "create", str(self._path("conf.db")), str(OVS_SCHEMA))
        self._run("ovsdb-server", "--detach", "--no-chdir", f"--pidfile={self._path('ovsdb-server.pid')}",
                  f"--log-file={self._path('ovsdb-server.log')}", f"--unixctl={self._path('ovsdb-server.ctl')}",
                  f"--remote=punix:{self._path('db.sock')}", "-vconsole:off", str(self._path("conf.db")),
                  log_file="ovsdb-server.log")
        self._started.append("ovsdb-server.pid")
        self._run("ovs-vsctl", f"--db={db}", "--no-wait", "init", log_file="ovsdb-server.log")
        self._run("ovs-vswitchd", "--enable-dummy=override", "--disable-system", "--disable-system-route",
                  "--detach", "--no-chdir", f"--pidfile={self._path('ovs-vswitchd.pid')}",
                  f"--log-file={self._path('ovs-vswitchd.log')}", f"--unixctl={self._path('ovs-vswitchd.ctl')}",
                  "-vconsole:off", db, log_file="ovs-vswitchd.log")
        self._started.append("ovs-vswitchd.pid")
        bridge = ["datapath_type=dummy", "fail-mode=standalone", f"other_config:mac-aging-time={mac_aging_s}"]
        if mac_table_size is not None:
            bridge.append(f"other_config:mac-table-size={mac_table_size}")
        cmd = ["ovs-vsctl", f"--db={db}", f"--timeout={_TIMEOUT_S:.0f}",
               "add-br", _BRIDGE, "--", "set", "bridge", _BRIDGE, *bridge]
        for ofport, port in enumerate(self.ports, start=1):
            cmd += ["--", "add-port", _BRIDGE, port.name,
                    "--", "set", "interface", port.name, "type=dummy", f"ofport_request={ofport}",
                    f"options:tx_pcap={self.pcap_path(port.name)}", f"mtu_request={MAX_FRAME - 14}",
                    "--", "set", "port", port.name, *port.ovs_settings()]
        # Without --no-wait, ovs-vsctl returns once ovs-vswitchd has applied the configuration.
        self._run(*cmd, log_file="ovs-vswitchd.log")
        if self.mirrors:
            cmd = ["ovs-vsctl", f"--db={db}", f"--timeout={_TIMEOUT_S:.0f}"]
            for name in sorted({n for m in self.mirrors for n in (m.to, *m.select_src, *m.select_dst)}):
                cmd += ["--", f"--id=@{name}", "get", "Port", name]
            for k, m in enumerate(self.mirrors):
                cmd += ["--", f"--id=@m{k}", "create", "Mirror", f"name=m{k}", f"output_port=@{m.to}"]
                if m.select_src:
                    cmd.append("select_src_port=[" + ",".join(f"@{n}" for n in m.select_src) + "]")
                if m.select_dst:
                    cmd.append("select_dst_port=[" + ",".join(f"@{n}" for n in m.select_dst) + "]")
            cmd += ["--", "set", "Bridge", _BRIDGE,
                    "mirrors=[" + ",".join(f"@m{k}" for k in range(len(self.mirrors))) + "]"]
            self._run(*cmd, log_file="ovs-vswitchd.log")
        got = json.loads(self._run("ovs-vsctl", f"--db={db}", "--format=json", "--columns=name,ofport,mtu",
                                   "list", "Interface"))
        applied = {name: (ofport, mtu) for name, ofport, mtu in got["data"]}
        for ofport, port in enumerate(self.ports, start=1):
            if applied.get(port.name) != (ofport, MAX_FRAME - 14):
                raise OvsError(f"port {port.name} got (OpenFlow port, MTU) {applied.get(port.name)}, "
                               f"not {(ofport, MAX_FRAME - 14)}{self._log_tail('ovs-vswitchd.log')}")
        self._ctl = _Unixctl(self._path("ovs-vswitchd.ctl"))
        log.info("OVS %s started in %s with %d ports in %.2f s", self._ctl.call("version").strip(),
                 self.workdir, len(self.ports), time.monotonic() - t0)

    def _live_pid(self, pid_file: str) -> int | None:
        """The pid in ``pid_file`` if that process is alive and is the OVS daemon of this workdir."""
        try:
            pid = int(self._path(pid_file).read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            return None
        # The pid file names the daemon's own path; a reused pid belongs to something else.
        return pid if str(self._path(pid_file)) in cmdline else None

    def close(self) -> None:
        """Stop both daemons (by their pid files); safe to call twice and after a failed start.

        Only daemons this switch started are stopped, never another switch's in the same directory.
        """
        if self._closed:
            return
        self._closed = True
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        for pid_file in reversed(self._started):
            pid = self._live_pid(pid_file)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            # The daemon removes its pid file first thing on SIGTERM: watch the process itself.
            deadline = time.monotonic() + 5
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if _running(pid):
                log.warning("%s (pid %d) ignored SIGTERM; killing it", pid_file, pid)
                os.kill(pid, signal.SIGKILL)
        log.debug("OVS in %s stopped", self.workdir)

    def __enter__(self) -> OvsSwitch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"OvsSwitch({str(self.workdir)!r}, ports={[p.name for p in self.ports]}, {state})"

    # -- traffic -------------------------------------------------------------------------------
    def _appctl(self, method: str, *params: str) -> str:
        if self._ctl is None:
            raise OvsError(f"{self!r} is not running")
        return self._ctl.call(method, *params)

    def _rx_counts(self) -> dict[str, int]:
        shown = self._appctl("dpctl/show", "-s")
        return {name: int(n) for name, n in re.findall(r"port \d+: (\S+) \([^)]*\)\n\s+RX packets:(\d+)", shown)}

    def send(self, port: str, frame: bytes) -> None:
        """Inject one frame on ``port`` and return once OVS has finished with it."""
        if port not in self._rx_done:
            raise ValueError(f"no port {port!r} on this switch (ports: {list(self._rx_done)})")
        if len(frame) < 14:
            raise ValueError(f"a frame needs at least a 14-byte Ethernet header, got {len(frame)} bytes")
        self._appctl("netdev-dummy/receive", port, bytes(frame).hex())
        self._rx_done[port] += 1
        deadline = time.monotonic() + _TIMEOUT_S
        while self._rx_counts().get(port, -1) < self._rx_done[port]:
            if time.monotonic() > deadline:
                raise OvsError(f"OVS did not take the frame on {port} within {_TIMEOUT_S:.0f} s"
                               f"{self._log_tail('ovs-vswitchd.log')}")
        # Every frame takes the slow path: see the module docstring for why this is needed.
        self._appctl("revalidator/purge")

    def send_all(self, frames: Iterable[tuple[str, bytes]]) -> None:
        """Inject ``(port, frame)`` pairs in order, each finished before the next goes in."""
        t0, n = time.monotonic(), 0
        for port, frame in frames:
            self.send(port, frame)
            n += 1
        elapsed = time.monotonic() - t0
        log.debug("OVS took %d frames in %.3f s (%.0f frames/s)", n, elapsed, n / elapsed if elapsed else 0.0)

    def egress(self) -> dict[str, list[bytes]]:
        """Every frame each port has sent so far, in order (read from its tx_pcap)."""
        return {p.name: [f.data for f in read_pcap(self.pcap_path(p.name))] for p in self.ports}

    def fdb(self) -> list[tuple[str, int, str]]:
        """The MAC table as ``(port name, vlan, "aa:bb:cc:dd:ee:ff")``, sorted (``fdb/show``)."""
        entries = []
        for line in self._appctl("fdb/show", _BRIDGE).splitlines()[1:]:
            fields = line.split()
            if len(fields) < 3:
                continue
            ofport, vlan, mac = fields[:3]
            if ofport not in self._by_ofport:
                raise OvsError(f"fdb/show names an unknown port {ofport!r}: {line!r}")
            entries.append((self._by_ofport[ofport], int(vlan), mac.lower()))
        return sorted(entries)

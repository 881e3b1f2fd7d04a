"""pcap input and output.

Reading goes through scapy's raw readers (classic pcap, microsecond or nanosecond, and pcapng);
only Ethernet captures (link type 1, DLT_EN10MB) are accepted. A file that cannot be used raises
:class:`PcapError` naming the file, which the command line turns into exit status 2.

Two things are not errors but are worth telling the user, so :func:`read_capture` reports them:

* a frame cut by the capture's snaplen (captured length below the length on the wire): the NIC
  sees only the captured bytes, so its IP length no longer matches and it is dropped as malformed;
* a truncated file (the capture was cut mid-record, e.g. tcpdump killed while writing): the
  frames before the cut are used, the partial record is left out.

Writing is done here byte by byte (classic libpcap, microsecond timestamps, link type 1,
snaplen 262144) so the same frames and timestamps always give the same file.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PcapError", "PcapFrame", "Capture", "read_capture", "read_pcap", "write_pcap", "LINKTYPE_ETHERNET"]

log = logging.getLogger(__name__)

LINKTYPE_ETHERNET = 1
_SNAPLEN = 262144


class PcapError(ValueError):
    """A capture file that cannot be used (missing, unreadable, not Ethernet)."""


@dataclass(frozen=True)
class PcapFrame:
    """One captured frame: bytes as captured, timestamp in integer nanoseconds, 1-based index, and
    its length on the wire (``wire_len > len(data)``: cut by the capture's snaplen)."""
    data: bytes
    ts_ns: int
    index: int
    wire_len: int | None = None

    @property
    def snaplen_cut(self) -> bool:
        """The capture kept fewer bytes than were on the wire."""
        return self.wire_len is not None and self.wire_len > len(self.data)


@dataclass(frozen=True)
class Capture:
    """The usable frames of one capture file and what was odd about it."""
    path: Path
    frames: list[PcapFrame]
    #: Why the file ends early (a partial last record), or None for a complete file.
    truncated: str | None = None

    @property
    def snaplen_cut(self) -> int:
        """How many frames the capture's snaplen cut short."""
        return sum(f.snaplen_cut for f in self.frames)


def read_capture(path: str | Path) -> Capture:
    """The frames of an Ethernet pcap/pcapng file, in file order, with snaplen cuts and truncation.

    Raises :class:`PcapError` (naming the file) when the file is missing, is not a capture or is
    not Ethernet. A partial last record is not an error: it is left out and reported in
    :attr:`Capture.truncated`.
    """
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    path = Path(path)
    if not path.is_file():
        raise PcapError(f"{path}: no such file")
    # scapy warns "packet has been truncated" on its own logger; the caller reports it once instead.
    scapy_log = logging.getLogger("scapy.runtime")
    saved_level = scapy_log.level
    scapy_log.setLevel(logging.ERROR)
    try:
        return _read_capture(path, RawPcapReader, Scapy_Exception)
    finally:
        scapy_log.setLevel(saved_level)


def _read_capture(path: Path, RawPcapReader, Scapy_Exception) -> Capture:  # noqa: N803 (classes)
    frames: list[PcapFrame] = []
    truncated = None
    end_of_last = None     # file offset after the last whole record (classic pcap)
    try:
        reader = RawPcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError, struct.error) as exc:
        raise PcapError(f"{path}: not a readable pcap or pcapng file ({exc})") from None
    try:
        linktype = getattr(reader, "linktype", None)
        nano = bool(getattr(reader, "nano", False))
        try:
            for n, (data, meta) in enumerate(reader, start=1):
                lt = getattr(meta, "linktype", linktype)
                if lt != LINKTYPE_ETHERNET:
                    raise PcapError(f"{path}: link type {lt} (frame {n}) is not Ethernet (DLT_EN10MB = 1); "
                                    "only Ethernet captures can be replayed")
                caplen = getattr(meta, "caplen", None)
                if caplen is not None and len(data) < caplen:
                    # scapy hands back the partial record of a file cut mid-frame.
                    truncated = f"record {n} has {len(data)} of its {caplen} captured bytes"
                    break
                frames.append(PcapFrame(bytes(data), _ts_ns(meta, nano), n, getattr(meta, "wirelen", None)))
                end_of_last = _tell(reader)
            if truncated is None:
                truncated = _trailing_bytes(reader, path, len(frames), end_of_last)
        except PcapError:
            raise
        except (Scapy_Exception, OSError, EOFError, struct.error, ValueError) as exc:
            raise PcapError(f"{path}: corrupt capture after {len(frames)} frame(s) ({exc})") from None
        if linktype is not None and linktype != LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: link type {linktype} is not Ethernet (DLT_EN10MB = 1); "
                            "only Ethernet captures can be replayed")
    finally:
        reader.close()
    log.debug("read %d frames from %s", len(frames), path)
    return Capture(path, frames, truncated)


def _tell(reader) -> int | None:
    fh = getattr(reader, "f", None)
    if fh is None or getattr(fh, "name", None) is None or not isinstance(fh.name, str):
        return None
    try:
        return fh.tell()
    except (OSError, ValueError):
        return None


def _trailing_bytes(reader, path: Path, n_frames: int, end_of_last: int | None) -> str | None:
    """scapy stops quietly at a partial record header; bytes left after the last whole record say so."""
    if type(reader).__name__ != "RawPcapReader" or getattr(reader.f, "name", None) != str(path):
        return None     # pcapng blocks or a compressed file: offsets are not comparable
    if end_of_last is None:
        end_of_last = 24    # the classic pcap file header alone
    size = path.stat().st_size
    if size > end_of_last:
        return f"{size - end_of_last} byte(s) after record {n_frames} are not a whole record"
    return None


def read_pcap(path: str | Path) -> list[PcapFrame]:
    """All complete frames of an Ethernet pcap/pcapng file, in file order (see :func:`read_capture`)."""
    cap = read_capture(path)
    if cap.truncated:
        log.warning("%s: truncated capture (%s)", path, cap.truncated)
    return cap.frames


def _ts_ns(meta, nano: bool) -> int:
    if hasattr(meta, "sec"):          # classic pcap
        return meta.sec * 1_000_000_000 + meta.usec * (1 if nano else 1000)
    if hasattr(meta, "tshigh"):       # pcapng: tsresol units
        ticks = meta.tshigh << 32 | meta.tslow
        resol = getattr(meta, "tsresol", 1_000_000)
        return ticks * 1_000_000_000 // resol
    return 0


def write_pcap(path: str | Path, frames: list[tuple[bytes, int]]) -> None:
    """Write ``(frame bytes, timestamp ns)`` pairs as a classic microsecond Ethernet pcap."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_ETHERNET)]
    for data, ts_ns in frames:
        sec, rem = divmod(int(ts_ns), 1_000_000_000)
        out.append(struct.pack("<IIII", sec & 0xFFFFFFFF, rem // 1000, len(data), len(data)))
        out.append(bytes(data))
    Path(path).write_bytes(b"".join(out))

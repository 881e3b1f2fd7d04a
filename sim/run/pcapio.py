"""pcap input and output.

Reading goes through scapy's raw readers (classic pcap, microsecond or nanosecond, and pcapng);
only Ethernet captures (link type 1, DLT_EN10MB) are accepted. Any problem raises
:class:`PcapError` naming the file, which the command line turns into exit status 2.

Writing is done here byte by byte (classic libpcap, microsecond timestamps, link type 1,
snaplen 262144) so the same frames and timestamps always give the same file.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PcapError", "PcapFrame", "read_pcap", "write_pcap", "LINKTYPE_ETHERNET"]

log = logging.getLogger(__name__)

LINKTYPE_ETHERNET = 1
_SNAPLEN = 262144


class PcapError(ValueError):
    """A capture file that cannot be used (missing, unreadable, not Ethernet)."""


@dataclass(frozen=True)
class PcapFrame:
    """One captured frame: bytes as captured, timestamp in integer nanoseconds, 1-based index."""
    data: bytes
    ts_ns: int
    index: int


def read_pcap(path: str | Path) -> list[PcapFrame]:
    """All frames of an Ethernet pcap/pcapng file, in file order."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    path = Path(path)
    if not path.is_file():
        raise PcapError(f"{path}: no such file")
    frames: list[PcapFrame] = []
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
                frames.append(PcapFrame(bytes(data), _ts_ns(meta, nano), n))
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
    return frames


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

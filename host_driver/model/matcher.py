"""Golden model of the payload matcher (hdl/matcher): what the hardware reports per frame.

Written from the contract in docs/matcher.md, not from the HDL: every payload position starts a
4-byte window; a window whose case-folded bytes fingerprint to a valid bucket with the same tag
is a hit; the frame's hits are recorded in payload order, at most one per beat (the lowest byte
lane), into ``max_hits`` slots, and a second hit in a beat or one more than the slots sets
``overflow``. ``punt`` is set by overflow or by any recorded hit whose bucket is not ``settled``.

The table is two banks of ``2**index_bits`` buckets; :meth:`MatcherModel.write` writes the shadow
bank, :meth:`MatcherModel.commit` swaps the banks (between frames, like the hardware).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hdl.matcher.hashing import WINDOW, split, window_mixes

__all__ = ["Entry", "Hit", "FrameResult", "MatcherModel"]


@dataclass(frozen=True)
class Entry:
    """One bucket: ``valid``, ``settled`` and the stored ``tag``."""

    valid: bool = False
    settled: bool = False
    tag: int = 0


@dataclass(frozen=True)
class Hit:
    """A recorded hit: the bucket and the window's first byte relative to the payload."""

    bucket: int
    pos: int
    settled: bool


@dataclass
class FrameResult:
    """The matcher's answer for one frame."""

    hits: list[Hit] = field(default_factory=list)
    overflow: bool = False
    punt: bool = False


class MatcherModel:
    """The matcher's tables and its per-frame result (see the module docstring).

    Parameters
    ----------
    data_width : int
        W; the beat is ``data_width // 8`` bytes (one hit recorded per beat).
    index_bits, tag_bits, max_hits : int
        As :class:`hdl.matcher.Matcher` (``tag_bits`` None: the whole tag).
    """

    def __init__(self, data_width: int = 64, index_bits: int = 11, tag_bits: int | None = None, max_hits: int = 4):
        self.lanes = data_width // 8
        self.index_bits = index_bits
        self.tag_bits = 32 - index_bits if tag_bits is None else tag_bits
        self.max_hits = max_hits
        self.banks = [dict[int, Entry](), dict[int, Entry]()]
        self.active = 0

    def __repr__(self):
        return (f"MatcherModel(lanes={self.lanes}, index_bits={self.index_bits}, tag_bits={self.tag_bits}, "
                f"max_hits={self.max_hits})")

    def write(self, index: int, entry: Entry) -> None:
        """Write one bucket of the shadow bank."""
        if not 0 <= index < 1 << self.index_bits:
            raise ValueError(f"bucket index must be in 0..{(1 << self.index_bits) - 1}, not {index!r}")
        self.banks[1 - self.active][index] = entry

    def commit(self) -> None:
        """Make the shadow bank active (the hardware does it before the next frame)."""
        self.active = 1 - self.active

    def load(self, table: dict[int, Entry]) -> None:
        """Write a whole table into the shadow bank (every other bucket invalid) and commit it."""
        shadow = self.banks[1 - self.active]
        shadow.clear()
        for index, entry in table.items():
            self.write(index, entry)
        self.commit()

    def window_hits(self, payload: bytes) -> list[tuple[int, int, bool]]:
        """(payload position, bucket, settled) of every window of the payload that hits."""
        bank = self.banks[self.active]
        out = []
        for pos, mixed in enumerate(window_mixes(payload)):
            index, tag = split(mixed, self.index_bits, self.tag_bits)
            e = bank.get(index)
            if e is not None and e.valid and e.tag == tag:
                out.append((pos, index, e.settled))
        return out

    def frame(self, frame: bytes, payload_offset: int, payload_len: int | None = None) -> FrameResult:
        """The result for a frame whose payload is ``frame[payload_offset:payload_offset+payload_len]``
        (default: to the end of the frame)."""
        if payload_len is None:
            payload_len = max(0, len(frame) - payload_offset)
        payload = frame[payload_offset:payload_offset + payload_len]
        res = FrameResult()
        per_beat: dict[int, list] = {}
        for pos, bucket, settled in self.window_hits(payload):
            # A window is seen in the beat that holds its last byte.
            per_beat.setdefault((payload_offset + pos + WINDOW - 1) // self.lanes, []).append((pos, bucket, settled))
        for beat in sorted(per_beat):
            hits = per_beat[beat]
            if len(hits) > 1:
                res.overflow = True
            pos, bucket, settled = hits[0]
            if len(res.hits) == self.max_hits:
                res.overflow = True
            else:
                res.hits.append(Hit(bucket, pos, settled))
                res.punt |= not settled
        res.punt |= res.overflow
        return res

"""The matcher's window fingerprint: 4 case-folded payload bytes through a fixed invertible GF(2) map.

Defined once here; the gateware (:mod:`hdl.matcher.matcher`), the rule compiler that fills the
tables (host_driver/rules/content.py) and the golden model (host_driver/model/matcher.py) all use
these functions, so a table the driver writes is read back by the hardware the same way.

A window is the 4 bytes ``b0 b1 b2 b3`` (``b0`` first on the wire) read as the little-endian
word ``b0 | b1 << 8 | b2 << 16 | b3 << 24`` (the byte order of ``tdata`` lanes). Its image under
:data:`MIX_ROWS` splits into a bucket index (the low ``index_bits`` bits) and a tag (the rest).
Because the map is invertible, (index, full tag) identifies the folded window exactly: a table
that stores the whole tag confirms the 4 folded bytes with no false positive.
"""

from __future__ import annotations

import random

__all__ = ["WINDOW", "MIX_ROWS", "fold", "fold_bytes", "window_word", "mix", "window_mixes", "split", "fingerprint"]

#: Bytes per fingerprint window: the shortest literal the hardware prefilter takes.
WINDOW = 4
_SEED = 0x5EC41C


def _invertible_rows(seed: int) -> tuple[int, ...]:
    """32 random 32-bit rows forming an invertible matrix over GF(2) (tried seed by seed)."""
    rng = random.Random(seed)
    while True:
        rows = [rng.getrandbits(32) for _ in range(32)]
        basis: list[int] = []
        for r in rows:
            for b in basis:
                r = min(r, r ^ b)
            if not r:
                break
            basis.append(r)
        else:
            return tuple(rows)


#: Output bit ``j`` of :func:`mix` is the parity of ``word & MIX_ROWS[j]``.
MIX_ROWS: tuple[int, ...] = _invertible_rows(_SEED)


def fold(byte: int) -> int:
    """ASCII case fold: 'A'..'Z' to 'a'..'z', every other byte unchanged (Suricata's nocase)."""
    return byte | 0x20 if 0x41 <= byte <= 0x5A else byte


def fold_bytes(data: bytes) -> bytes:
    return bytes(fold(b) for b in data)


def window_word(window: bytes) -> int:
    """The 32-bit word of a 4-byte window, first byte in the low bits, case-folded."""
    if len(window) != WINDOW:
        raise ValueError(f"a window is {WINDOW} bytes, not {len(window)}")
    return int.from_bytes(fold_bytes(window), "little")


def _mix_bits(word: int) -> int:
    return sum(((word & row).bit_count() & 1) << j for j, row in enumerate(MIX_ROWS))


# The map is linear, so it is the XOR of one 256-entry table per byte lane (fast in Python).
_LANE_TABLES = tuple(tuple(_mix_bits(v << (8 * lane)) for v in range(256)) for lane in range(WINDOW))
_FOLD = bytes(fold(b) for b in range(256))


def mix(word: int) -> int:
    """The invertible GF(2) map (an XOR network of the word's bits in gateware)."""
    t0, t1, t2, t3 = _LANE_TABLES
    return t0[word & 0xFF] ^ t1[word >> 8 & 0xFF] ^ t2[word >> 16 & 0xFF] ^ t3[word >> 24 & 0xFF]


def window_mixes(data: bytes) -> list[int]:
    """:func:`mix` of the folded window at every position of ``data`` (``len(data) - 3`` values)."""
    f = data.translate(_FOLD)
    t0, t1, t2, t3 = _LANE_TABLES
    return [t0[a] ^ t1[b] ^ t2[c] ^ t3[d] for a, b, c, d in zip(f, f[1:], f[2:], f[3:])]


def split(mixed: int, index_bits: int, tag_bits: int) -> tuple[int, int]:
    """(bucket index, tag) of a mixed word: the low ``index_bits`` bits, then the next ``tag_bits``."""
    return mixed & ((1 << index_bits) - 1), (mixed >> index_bits) & ((1 << tag_bits) - 1)


def fingerprint(window: bytes, index_bits: int, tag_bits: int) -> tuple[int, int]:
    """(bucket index, tag) of a 4-byte window."""
    return split(mix(window_word(window)), index_bits, tag_bits)

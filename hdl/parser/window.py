"""Helpers shared by the pipelined parser's stages: byte slices, carry-chain compares and the
three-stage variable-offset read of the header window."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Value

from hdl.lib.pipeline import Pipeline
from hdl.lib.timing import KEEP_COPY

__all__ = ["LEN_BITS", "OFF_BITS", "L3_BYTES", "lt", "byte_slice", "be16", "WindowReader"]

#: Internal frame length width. docs/parser.md checks IP lengths (up to 65535 + 62 bytes) against
#: the true frame length, so the beat counter saturates only past 2**17 bytes, where every such
#: check already has its true outcome; ``frame_len`` itself saturates at 16383.
LEN_BITS = 18
#: Internal offset width: an IPv6 extension header can move the offset up to H + 2048 bytes,
#: past the 10-bit ``PacketMeta`` offset fields (which then hold the low bits).
OFF_BITS = 12
#: Bytes of the L3 header captured at the (3-way) L3 offset: IPv6 fixed header plus the first
#: 4 bytes of the first extension header, which therefore needs no variable-offset mux.
L3_BYTES = 44


def lt(a, b):
    """``a < b`` (unsigned) as the sign of ``a - b``.

    Why: a carry chain and nothing after it (Yosys maps ``<`` to a shorter chain with LUTs after it).
    """
    diff = Value.cast(a) - Value.cast(b)
    return diff[len(diff) - 1]


def byte_slice(vec, start, count):
    """Bytes ``start .. start+count-1`` of a little-endian byte vector."""
    return vec[8 * start:8 * (start + count)]


def be16(vec, i):
    """The big-endian 16-bit field at byte ``i`` of a little-endian byte vector."""
    return Cat(byte_slice(vec, i + 1, 1), byte_slice(vec, i, 1))


class WindowReader:
    """Variable-offset 32-bit reads of the header window, three stages each.

    Every offset past the fixed L3 header is congruent to 2 mod 4 (l3_offset is 14/18/22, later
    steps are multiples of 4), so the muxes select 32-bit words of the window shifted by 2 bytes.
    The word count is a power of two so the index is a plain slice of the offset; reads past the
    window are garbage and never used (the beyond-window checks stop first). A read is 4:1 on the
    low index bits (:meth:`first`), 4:1 on the next two (:meth:`middle`), then the rest
    (:meth:`last`): one wide mux per stage meets 156.25 MHz.

    Parameters
    ----------
    pipeline : :class:`~hdl.lib.pipeline.Pipeline`
    window : int
        Header window size in bytes.
    """

    def __init__(self, pipeline: Pipeline, window: int):
        self._p = pipeline
        self._window = window
        self.n_words = 1 << ((window - 2 + 3) // 4 - 1).bit_length()
        #: Bits of the word index (offset bits 2 .. 2 + index_bits).
        self.index_bits = self.n_words.bit_length() - 1

    def __repr__(self):
        return f"WindowReader(window={self._window})"

    def first(self, vec, off, off_next, min_off, stage, name):
        """First read stage, registered at ``stage``: a 4:1 word mux per group of four words.

        ``vec`` (the window, of ``stage - 1``) is read at the offset register ``off`` (of
        ``stage - 1``) on its bits 2..3. Why kept copies: each group takes those bits from a copy
        of its own, loaded from ``off_next`` (the input of ``off``), since one register fanned
        out to every group of the window crossed the die (docs/performance.md).
        """
        p, window = self._p, self._window
        off.attrs[KEEP_COPY] = 1
        words = []
        for k in range(self.n_words):
            start = 4 * k + 2
            end = min(start + 4, window)
            if start < min_off or start >= window:
                words.append(None)
            else:
                words.append(Cat(vec[8 * start:8 * end], Const(0, 8 * (start + 4 - end))))
        groups = []
        for g in range(self.n_words // 4):
            grp = words[4 * g:4 * g + 4]
            if all(w is None for w in grp):
                groups.append(Const(0, 32))
            else:
                grp = [Const(0, 32) if w is None else w for w in grp]
                sel = p.reg(Value.cast(off_next)[2:4], stage - 1, f"{name}_sel{g}", keep=True)
                groups.append(Cat(*grp).word_select(sel, 32))
        return p.reg(Cat(*groups), stage, name)

    @staticmethod
    def middle(l1, sel):
        """Second read stage (combinational): 4:1 over groups of the first stage's words."""
        groups = len(l1) // 32
        out = []
        for g in range(0, groups, 4):
            out.append(l1[32 * g:32 * (g + 4)].word_select(sel[:2], 32))
        return Cat(*out)

    @staticmethod
    def last(l2, sel):
        """Last read stage (combinational): the word the remaining index bits select."""
        return l2.word_select(sel, 32) if len(sel) else l2

"""AXI4-Stream signature used on every packet port.

Protocol rules (AMBA AXI4-Stream, ARM IHI 0051A), checked by the testbenches:

* A transfer happens on a cycle where ``tvalid`` and ``tready`` are both high.
* ``tvalid`` never waits for ``tready``; once high, ``tvalid`` and the payload hold until the transfer.
* Streams are packed: every beat but the last has all ``tkeep`` bits set; the last beat's
  ``tkeep`` is contiguous from bit 0. Byte ``i`` of a beat is ``tdata[8*i+7:8*i]`` (first byte on
  the wire in the low bits).
* ``tuser`` bit 0 on the last beat marks a bad frame (e.g. an FCS error seen by the MAC).
  Internal streams widen ``tuser`` to carry the ingress port number above bit 0.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXIStreamSignature", "AXILiteSignature", "keep_count", "top_byte_count"]


class AXIStreamSignature(wiring.Signature):
    """AXI4-Stream with ``tdata``/``tkeep``/``tlast``/``tuser``/``tvalid``/``tready``.

    Parameters
    ----------
    data_width:
        Width of ``tdata`` in bits; a multiple of 8.
    user_width:
        Width of ``tuser``.
    """

    def __init__(self, data_width: int, user_width: int = 1):
        if data_width <= 0 or data_width % 8:
            raise ValueError(f"AXI-Stream data width must be a positive multiple of 8, not {data_width!r}")
        self.data_width = data_width
        self.user_width = user_width
        super().__init__({
            "tdata": Out(data_width),
            "tkeep": Out(data_width // 8),
            "tlast": Out(1),
            "tuser": Out(user_width),
            "tvalid": Out(1),
            "tready": In(1),
        })

    def __eq__(self, other):
        return (isinstance(other, AXIStreamSignature) and other.data_width == self.data_width
                and other.user_width == self.user_width)

    def __repr__(self):
        return f"AXIStreamSignature({self.data_width}, user_width={self.user_width})"


class AXILiteSignature(wiring.Signature):
    """AXI4-Lite (32-bit data) as seen by a slave's master: ``Out`` members are master outputs.

    Member names follow the AMBA spec (ARM IHI 0022E) so that cocotbext-axi's ``AxiLiteBus``
    binds to the Verilog ports ``<prefix>__awaddr`` and so on.
    """

    def __init__(self, addr_width: int = 16):
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, AXILiteSignature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"AXILiteSignature(addr_width={self.addr_width})"


def keep_count(tkeep, n_bytes: int):
    """Number of bytes in a packed beat: the index of the top set bit of a contiguous ``tkeep``, plus one.

    An OR tree on the one-hot top bit instead of a popcount adder tree.
    """
    return top_byte_count(tkeep & ~(tkeep >> 1))


def top_byte_count(top):
    """:func:`keep_count` from the one-hot top kept byte (for a caller that registers it first):
    one OR tree per count bit."""
    from amaranth.hdl import Cat, Const
    n_bytes = len(top)
    bits = []
    for j in range(n_bytes.bit_length()):
        terms = [top[i] for i in range(n_bytes) if ((i + 1) >> j) & 1]
        bits.append(Cat(*terms).any() if terms else Const(0, 1))
    return Cat(*bits)

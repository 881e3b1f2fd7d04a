"""Header parsers: one contract (docs/parser.md), two architectures chosen by ``NicConfig.parser``.

:class:`~hdl.parser.pipelined.Parser` takes a frame every cycle at a fixed latency (stage groups
in capture.py, l2.py, l3.py, ipv6_ext.py, l4.py, record.py); :class:`~hdl.parser.sequential.
SequentialParser` walks a block-RAM window in a few cycles per frame, for small FPGAs.
"""

from __future__ import annotations

from amaranth.lib import wiring

from hdl.config import NicConfig

__all__ = ["make_parser"]


def make_parser(config: NicConfig) -> wiring.Component:
    """The parser ``config.parser`` names (:class:`~hdl.parser.pipelined.Parser` or
    :class:`~hdl.parser.sequential.SequentialParser`)."""
    if config.parser == "sequential":
        from hdl.parser.sequential import SequentialParser
        return SequentialParser(config)
    from hdl.parser.pipelined import Parser
    return Parser(config)

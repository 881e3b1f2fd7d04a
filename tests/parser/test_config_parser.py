"""NicConfig.parser: validation, the TOML/dict path, and which parser NicTop builds from it."""

import pytest
from amaranth.hdl import Fragment

from hdl.board.boards import BOARDS
from hdl.config import PARSER_ARCHITECTURES, NicConfig
from hdl.parser import make_parser
from hdl.parser.pipelined import Parser
from hdl.parser.sequential import SequentialParser
from hdl.top import NicTop


def test_parser_defaults_to_pipelined():
    assert NicConfig().parser == "pipelined"
    assert PARSER_ARCHITECTURES == ("pipelined", "sequential")


@pytest.mark.parametrize("bad", ["Sequential", "fast", "", None, 1])
def test_unknown_parser_is_rejected_with_the_choices(bad):
    with pytest.raises(ValueError, match=r"parser must be one of 'pipelined', 'sequential', not "):
        NicConfig(parser=bad)


def test_parser_from_dict_names_the_source():
    assert NicConfig.from_dict({"parser": "sequential"}).parser == "sequential"
    with pytest.raises(ValueError, match=r"^nic.toml: parser must be one of 'pipelined', 'sequential'"):
        NicConfig.from_dict({"parser": "bogus"}, source="nic.toml")


def test_parser_is_part_of_the_build_key():
    assert NicConfig().key() != NicConfig(parser="sequential").key()
    assert NicConfig(parser="sequential").as_dict()["parser"] == "sequential"


def test_make_parser_picks_the_class():
    pipe = make_parser(NicConfig())
    seq = make_parser(NicConfig(parser="sequential"))
    assert type(pipe) is Parser and type(seq) is SequentialParser
    assert "space" in dict(seq.signature.members) and "space" in dict(pipe.signature.members)
    for p in (pipe, seq):
        Fragment.get(p, None)   # elaborated: no UnusedElaboratable warning


@pytest.mark.parametrize("parser, cls", [("pipelined", Parser), ("sequential", SequentialParser)])
def test_nic_top_builds_the_configured_parser(parser, cls, monkeypatch):
    import hdl.top
    built = []

    def recording(config):
        built.append(make_parser(config))
        return built[-1]

    monkeypatch.setattr(hdl.top, "make_parser", recording)
    Fragment.get(NicTop(NicConfig(parser=parser)), None)
    assert [type(p) for p in built] == [cls]


def test_icebreaker_uses_the_sequential_parser():
    assert BOARDS["icebreaker"].config().parser == "sequential"
    assert BOARDS["ulx3s-85f"].config().parser == "pipelined"

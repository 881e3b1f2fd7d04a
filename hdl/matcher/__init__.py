"""Payload signature matcher (issue 15): hashed 4-byte fast-pattern prefilter, see docs/matcher.md."""

from hdl.matcher.hashing import WINDOW, fingerprint, fold, fold_bytes, mix, window_word
from hdl.matcher.matcher import (
    OFFSET_BITS,
    PIPELINE_BEATS,
    Matcher,
    entry_layout,
    hit_layout,
    meta_layout,
    result_layout,
    table_block_rams,
    write_layout,
)

__all__ = ["Matcher", "entry_layout", "write_layout", "meta_layout", "hit_layout", "result_layout", "table_block_rams",
           "OFFSET_BITS", "PIPELINE_BEATS", "WINDOW", "fingerprint", "fold", "fold_bytes", "mix", "window_word"]

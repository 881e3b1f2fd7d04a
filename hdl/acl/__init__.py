"""ACL classifier (issue 14): first match over ternary entries in a block-RAM TCAM (docs/acl.md)."""

from hdl.acl.classifier import COUNTER_BITS, AclClassifier, AclResult, acl_key_from_meta
from hdl.acl.layouts import (
    KEY_BITS,
    SEARCH_BITS,
    SLOT_BITS,
    AclAction,
    AclActionWord,
    AclEntry,
    AclKey,
    TcamGeometry,
)

__all__ = ["AclClassifier", "AclResult", "acl_key_from_meta", "COUNTER_BITS", "AclKey", "AclAction",
           "AclActionWord", "AclEntry", "TcamGeometry", "KEY_BITS", "SEARCH_BITS", "SLOT_BITS"]

"""The security stage: flow table + ACL classifier in the NIC's data path (docs/security.md)."""

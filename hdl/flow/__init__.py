"""Stateful connection tracking (issue 14, docs/flow.md): the flow table."""

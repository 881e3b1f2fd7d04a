"""The NIC-resident switch fabric (issue 13, docs/switch.md): MAC learning table first."""

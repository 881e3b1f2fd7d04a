"""The NIC-resident switch fabric (issue 13, docs/switch.md): its blocks, one module each."""

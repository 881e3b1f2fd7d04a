"""The NIC-resident switch fabric (docs/switch.md): its blocks, one module each."""

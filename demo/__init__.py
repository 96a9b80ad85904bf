"""The embedded demo: the whole stack on one machine without Docker (shipper, traffic, runner)."""

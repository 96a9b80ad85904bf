"""The file → Elasticsearch shipper: how events reach the store in the embedded mode.

It stands where Fluentd and Filebeat stand in the compose mode (docs/shipper.md) and depends on
`common/` only. Its parts, in the order data flows through them:

- `tail`      complete lines of a JSON-lines file that its writer rotates (`.1`, `.2`, ...);
- `bulk`      a line → the document it becomes (index, `_id`), the bulk request, each item's outcome;
- `shipper`   the loop: read, deliver with back-off, commit offsets only after the store acknowledged;
- `offsets`   the read positions on disk, replaced atomically;
- `dead_letters`  lines that can never become documents, kept with the reason;
- `settings`  `SHIPPER_*` from the environment; `python -m shipper` is the CLI.
"""
from shipper.settings import ShipperSettings
from shipper.shipper import Shipper, ShipperStats

__all__ = ["Shipper", "ShipperSettings", "ShipperStats"]

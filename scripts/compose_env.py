"""`make compose-env`: write .env from .env.example with a strong random value for every secret.

Every empty `*_PASSWORD=` gets 32 hex characters and every empty `*_KEY=` 64 (Kibana needs 32+);
everything else is copied as it is. Hex needs no quoting in .env (compose interpolates `$`). An
existing .env is never overwritten: its secrets may already be baked into the data volumes.

    python3 scripts/compose_env.py [--example .env.example] [--output .env]
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET = re.compile(r"^([A-Z][A-Z0-9_]*_(PASSWORD|KEY))=\s*$")


def fill(example: str) -> str:
    """The example's text with each empty secret line given a fresh random value."""
    lines = []
    for line in example.splitlines():
        if match := SECRET.match(line):
            line = f"{match[1]}={secrets.token_hex(32 if match[2] == 'KEY' else 16)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make compose-env", description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=REPO / ".env.example")
    parser.add_argument("--output", type=Path, default=REPO / ".env")
    args = parser.parse_args(argv)
    try:
        # O_EXCL: refuse an existing file without a race between the check and the write
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"compose-env: {args.output} already exists; not overwriting it (its passwords may already be "
              f"in the Elasticsearch volume). Move it away first to write a new one.", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as out:
        out.write(fill(args.example.read_text()))
    print(f"compose-env: wrote {args.output} with random passwords and keys (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

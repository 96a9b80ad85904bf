"""`make compose-env`: write .env from .env.example with a strong random value for every secret,
and Alertmanager's secret files under secrets/alertmanager/.

Every empty `*_PASSWORD=` gets 32 hex characters and every empty `*_KEY=` 64 (Kibana needs 32+);
everything else is copied as it is. Hex needs no quoting in .env (compose interpolates `$`). An
existing .env is never overwritten: its secrets may already be baked into the data volumes.

The secret files prometheus/alertmanager.yml reads (slack_api_url, webhook_url,
telegram_bot_token) point at the compose stack's notification-sink, with a random path and token
in place of the real services' secrets; put the real Slack webhook URL, webhook URL and bot token
in them to notify for real (docs/alerts.md#secrets). An existing file is never overwritten. The
files are 0644 inside a 0700 secrets/ directory: the Alertmanager container (user nobody) reads
them through the bind mount, other users of the host cannot.

    python3 scripts/compose_env.py [--example .env.example] [--output .env] [--secrets secrets]
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


def alertmanager_secrets() -> dict[str, str]:
    """File name → a fresh value pointing at the compose notification-sink (ports 9101-9104)."""
    return {
        "slack_api_url": f"http://notification-sink:9101/services/T0LOCAL/B0LOCAL/{secrets.token_hex(12)}",
        "webhook_url": f"http://notification-sink:9102/alerts/{secrets.token_hex(12)}",
        "telegram_bot_token": f"{secrets.randbelow(9 * 10 ** 9) + 10 ** 9}:{secrets.token_urlsafe(26)}",
        # the Watchdog heartbeat (docs/alerts.md#watchdog); for real: a dead man's switch service's URL
        "heartbeat_url": f"http://notification-sink:9104/heartbeat/{secrets.token_hex(12)}",
    }


def write_alertmanager_secrets(directory: Path) -> list[Path]:
    """The missing secret files under `directory`/alertmanager (existing ones are kept); the new ones."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    target = directory / "alertmanager"
    target.mkdir(exist_ok=True)
    written = []
    for name, value in alertmanager_secrets().items():
        try:
            fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        written.append(target / name)
    return written


def write_evidently_secret(directory: Path) -> list[Path]:
    """secrets/evidently/evidently_secret, the Evidently UI's write secret (the log processor's too),
    unless it exists; the new file, if any (docs/evidently-ui.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    target = directory / "evidently"
    target.mkdir(exist_ok=True)
    try:
        fd = os.open(target / "evidently_secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return []
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return [target / "evidently_secret"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make compose-env", description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=REPO / ".env.example")
    parser.add_argument("--output", type=Path, default=REPO / ".env")
    parser.add_argument("--secrets", type=Path, default=REPO / "secrets")
    args = parser.parse_args(argv)
    written = write_alertmanager_secrets(args.secrets)
    if write_evidently_secret(args.secrets):
        print(f"compose-env: wrote the Evidently UI's write secret in {args.secrets / 'evidently'}")
    if written:
        print(f"compose-env: wrote {', '.join(p.name for p in written)} in {args.secrets / 'alertmanager'} "
              f"(they point at the notification-sink; put the real Slack/webhook/Telegram secrets there)")
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

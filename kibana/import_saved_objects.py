"""Import kibana/saved_objects.ndjson into Kibana (the `kibana-import` one-shot of docker-compose.yml).

Kibana answers an import with HTTP 200 even when objects fail (`"success": false` plus
`errors`), so the answer is read, not just its status: any failed object fails the job, naming
the object and the reason. Overwrites, so re-running it is harmless.

    KIBANA_URL=http://kibana:5601 KIBANA_USERNAME=elastic KIBANA_PASSWORD=... \
        python kibana/import_saved_objects.py [path/to/saved_objects.ndjson]
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

DEFAULT_FILE = Path(__file__).resolve().parent / "saved_objects.ndjson"


class ImportFailed(RuntimeError):
    """Kibana was unreachable, refused the request, or rejected some objects."""


@dataclass(frozen=True)
class ImportSettings:
    url: str = "http://127.0.0.1:5601"
    username: str | None = None
    password: str | None = None
    path: Path = DEFAULT_FILE
    wait_seconds: float = 300.0
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, argv: list[str] | None = None) -> "ImportSettings":
        env = os.environ if env is None else env
        argv = sys.argv[1:] if argv is None else argv
        return cls(
            url=env.get("KIBANA_URL", cls.url).rstrip("/"),
            username=env.get("KIBANA_USERNAME") or None,
            password=env.get("KIBANA_PASSWORD") or None,
            path=Path(argv[0]) if argv else cls.path,
            wait_seconds=float(env.get("KIBANA_WAIT_SECONDS", cls.wait_seconds)),
        )


def read_objects(path: Path) -> bytes:
    """The file as bytes, after checking each line is a JSON object with type and id."""
    data = path.read_bytes()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ImportFailed(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(obj, dict) or not obj.get("type") or not obj.get("id"):
            raise ImportFailed(f"{path}:{number}: a saved object needs `type` and `id`")
    return data


def multipart(filename: str, content: bytes, boundary: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one `file` field, and its Content-Type."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def import_errors(answer: Mapping[str, Any]) -> list[str]:
    """One line per object Kibana did not import; empty when the import fully succeeded."""
    problems = []
    for error in answer.get("errors") or []:
        kind = (error.get("error") or {}).get("type", "unknown")
        detail = error.get("error") or {}
        reason = detail.get("message") or detail.get("references") or kind
        problems.append(f"{error.get('type')}/{error.get('id')}: {kind}: {reason}")
    if answer.get("success") is not True and not problems:
        problems.append(f"Kibana answered success={answer.get('success')!r} without errors: {answer}")
    return problems


def _request(settings: ImportSettings, method: str, path: str, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(settings.url + path, data=body, method=method, headers=dict(headers or {}))
    request.add_header("kbn-xsrf", "true")
    if settings.username:
        token = b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_available(settings: ImportSettings) -> None:
    deadline = time.monotonic() + settings.wait_seconds
    while True:
        try:
            status, body = _request(settings, "GET", "/api/status")
            level = json.loads(body or b"{}").get("status", {}).get("overall", {}).get("level")
            if status == 200 and level == "available":
                return
            state = f"HTTP {status}, level {level!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            state = str(exc)
        if time.monotonic() > deadline:
            raise ImportFailed(f"Kibana at {settings.url} not available after {settings.wait_seconds:.0f}s ({state})")
        print(f"waiting for Kibana at {settings.url} ({state}) ...", flush=True)
        time.sleep(3)


def run(settings: ImportSettings) -> int:
    """Import; returns how many objects Kibana reports as imported."""
    content = read_objects(settings.path)
    wait_until_available(settings)
    body, content_type = multipart(settings.path.name, content, uuid.uuid4().hex)
    status, raw = _request(settings, "POST", "/api/saved_objects/_import?overwrite=true", body,
                           {"Content-Type": content_type})
    if status != 200:
        raise ImportFailed(f"import refused: HTTP {status}: {raw[:500].decode(errors='replace')}")
    answer = json.loads(raw)
    problems = import_errors(answer)
    if problems:
        raise ImportFailed("import incomplete:\n  " + "\n  ".join(problems))
    return int(answer.get("successCount", 0))


def main() -> int:
    settings = ImportSettings.from_env()
    try:
        count = run(settings)
    except (ImportFailed, OSError) as exc:
        print(f"kibana import: {exc}", file=sys.stderr)
        return 1
    print(f"kibana import: {count} saved objects from {settings.path} imported", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

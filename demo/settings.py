"""DemoSettings: every knob of the embedded demo, from DEMO_* environment variables and the command line."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from common.env import SettingsError, env_number, flag, setting
from log_processor.monitors import THRESHOLD_SIZES

# Each phase is one window for the processor: the smallest its drift thresholds cover.
MIN_WINDOW = THRESHOLD_SIZES[0]

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_STALL = 60.0    # --stall: EventsNotArriving's message comes ~45 s after the shipper stops (docs/demo.md)
PORT_NAMES = ("store", "serving", "log_processor", "prometheus", "alertmanager", "smtp", "evidently")
STORES = ("osmem", "opensearch")


@dataclass(frozen=True)
class Ports:
    """0 means: pick a free loopback port."""
    store: int = 0
    serving: int = 0
    log_processor: int = 0
    prometheus: int = 0
    alertmanager: int = 0
    smtp: int = 0
    evidently: int = 0      # the Evidently UI: 8001 when free, else a free one


@dataclass(frozen=True)
class DemoSettings:
    once: bool = False               # run the story, check it, exit (0 = the story held)
    store: str = "osmem"             # osmem (in memory, PyPI) or opensearch (real engine, needs Java 21+)
    # Phase lengths, in requests. The log processor's window is the latest min(normal, drift)
    # predictions; its drift thresholds are sized for that window (log_processor/evaluate/drift_thresholds.py),
    # so any length from MIN_WINDOW up holds the story.
    normal_requests: int = 600
    drift_requests: int = 600
    rate: float = 40.0               # requests per second
    feedback_delay: float = 1.0      # seconds before each request's ground truth is sent
    eval_interval: float = 2.0       # log processor evaluation interval, seconds
    alerts: bool = True              # Prometheus + Alertmanager (skipped with a hint when missing)
    alert_timeout: float = 180.0     # how long --once waits for the drift phase's (and the recovery's) messages
    recovery: bool = True            # a third phase of normal traffic, so the incident resolves (a resolved message)
    city: bool = True                # after the recovery, one city drifts alone (demo/city.py; needs the recovery)
    state_dir: Path = REPO_ROOT / "var/demo"   # wiped at start: a second run starts clean
    mail_dir: Path = REPO_ROOT / "var/mail"
    notifications_dir: Path = REPO_ROOT / "var/notifications"   # <channel>/*.json from demo/notification_sink.py
    # Link bases of the alert messages (Prometheus external labels; the processor's own URL is added)
    grafana_url: str = "http://localhost:3000"
    kibana_url: str = "http://localhost:5601"
    log_dir: Path = REPO_ROOT / "var/log"
    # The monitors the log processor runs and the story follows, each alike (the demo sets their
    # interval and window); relative paths inside it are relative to the repository's root.
    monitors_file: Path = REPO_ROOT / "log_processor/monitors.yaml"
    ports: Ports = Ports()
    seed: int = 42
    stall: float = 0.0               # seconds the shipper is stopped in the normal phase, traffic going on (0: never)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DemoSettings":
        env = os.environ if env is None else env
        number = _reader(env)
        ports = Ports(**{name: number(f"DEMO_{name.upper()}_PORT", 0, int, 0, 65535) for name in PORT_NAMES})
        return cls(
            once=setting(env, "DEMO_ONCE", cls.once, flag),
            store=_store(env.get("DEMO_STORE") or cls.store, "DEMO_STORE"),
            normal_requests=number("DEMO_NORMAL_REQUESTS", cls.normal_requests, int, MIN_WINDOW),
            drift_requests=number("DEMO_DRIFT_REQUESTS", cls.drift_requests, int, MIN_WINDOW),
            rate=number("DEMO_RATE", cls.rate, float, 1),
            feedback_delay=number("DEMO_FEEDBACK_DELAY", cls.feedback_delay, float, 0),
            eval_interval=number("DEMO_EVAL_INTERVAL", cls.eval_interval, float, 0.5),
            alerts=setting(env, "DEMO_ALERTS", cls.alerts, flag),
            alert_timeout=number("DEMO_ALERT_TIMEOUT", cls.alert_timeout, float, 1),
            recovery=setting(env, "DEMO_RECOVERY", cls.recovery, flag),
            city=setting(env, "DEMO_CITY", cls.city, flag),
            state_dir=Path(env.get("DEMO_STATE_DIR") or cls.state_dir),
            mail_dir=Path(env.get("DEMO_MAIL_DIR") or cls.mail_dir),
            notifications_dir=Path(env.get("DEMO_NOTIFICATIONS_DIR") or cls.notifications_dir),
            grafana_url=env.get("DEMO_GRAFANA_URL") or cls.grafana_url,
            kibana_url=env.get("DEMO_KIBANA_URL") or cls.kibana_url,
            log_dir=Path(env.get("DEMO_LOG_DIR") or cls.log_dir),
            monitors_file=Path(env.get("DEMO_MONITORS_FILE") or cls.monitors_file),
            ports=ports,
            seed=number("DEMO_SEED", cls.seed, int, 0),
            stall=_stall_setting(number("DEMO_STALL", cls.stall, float, 0)),
        )

    def with_args(self, args: argparse.Namespace) -> "DemoSettings":
        """Command-line flags (None = not given) over the environment's values."""
        changes: dict[str, Any] = {f.name: getattr(args, f.name) for f in fields(self)
                                   if getattr(args, f.name, None) is not None and f.name != "ports"}
        port_changes = {name: getattr(args, f"{name}_port") for name in PORT_NAMES
                        if getattr(args, f"{name}_port", None) is not None}
        if port_changes:
            changes["ports"] = replace(self.ports, **port_changes)
        return replace(self, **changes)


def _reader(env: Mapping[str, str]):
    def number(name: str, default: Any, kind: type, minimum: float, maximum: float | None = None) -> Any:
        return env_number(env, name, default, kind, minimum, maximum)
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags mirroring DEMO_*; their defaults are None so the environment's values stay."""
    parser.add_argument("--once", action="store_true", default=None,
                        help="run the story, print the table, exit 0 only when it held (no Ctrl-C needed)")
    parser.add_argument("--store", choices=STORES,
                        help="the Elasticsearch-API store: osmem (default, in memory) or opensearch "
                             "(a real OpenSearch node from Maven Central; needs Java 21+ and Maven)")
    parser.add_argument("--normal-requests", type=_window, metavar="N",
                        help=f"requests in the normal phase (default 600, at least {MIN_WINDOW})")
    parser.add_argument("--drift-requests", type=_window, metavar="N",
                        help=f"requests in the drift phase (default 600, at least {MIN_WINDOW})")
    parser.add_argument("--rate", type=_at_least(1, float), help="requests per second (default 40)")
    parser.add_argument("--feedback-delay", type=_at_least(0, float), metavar="SECONDS",
                        help="delay of each request's ground truth (default 1)")
    parser.add_argument("--eval-interval", type=_at_least(0.5, float), metavar="SECONDS",
                        help="log processor evaluation interval (default 2)")
    parser.add_argument("--no-alerts", dest="alerts", action="store_false", default=None,
                        help="do not start Prometheus and Alertmanager")
    parser.add_argument("--no-recovery", dest="recovery", action="store_false", default=None,
                        help="stop after the drift phase (no recovery phase, so no resolved messages)")
    parser.add_argument("--no-city", dest="city", action="store_false", default=None,
                        help="skip the last phase, in which one city drifts alone (SegmentDrift; "
                             "docs/demo.md#one-city)")
    parser.add_argument("--stall", type=_stall, metavar="SECONDS",
                        help="stop the shipper for SECONDS in the normal phase while traffic goes on: the "
                             "monitors go blind, EventsNotArriving fires, then the backlog ships "
                             "(docs/demo.md#a-stalled-pipeline; 60 shows it all)")
    parser.add_argument("--monitors-file", type=Path, metavar="PATH",
                        help="the monitors to run and follow (default log_processor/monitors.yaml)")
    for name in PORT_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}-port", dest=f"{name}_port", type=_port, metavar="PORT",
                            help=f"{name.replace('_', ' ')} port (default: a free one)")


def _stall(raw: str) -> float:
    value = _at_least(0, float)(raw)
    try:
        return _stall_setting(value)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stall_setting(value: float) -> float:
    """0 (no stall) or at least MIN_STALL seconds: a shorter stall ends before the blind alert's message."""
    if 0 < value < MIN_STALL:
        raise SettingsError(f"a stall of {value:g}s ends before EventsNotArriving's message could come: use at "
                            f"least {MIN_STALL:g}s (blind after 15 s, `for:` 8 s, the incident's 15 s group wait)")
    return value


def _window(raw: str) -> int:
    value = _at_least(1, int)(raw)
    if value < MIN_WINDOW:
        raise argparse.ArgumentTypeError(f"{raw!r} is below the smallest window the drift thresholds cover: "
                                         f"use at least {MIN_WINDOW}")
    return value


def _store(raw: str, name: str) -> str:
    if raw not in STORES:
        raise SettingsError(f"{name}={raw!r} is not a store (choose from: {', '.join(STORES)})")
    return raw


def _at_least(minimum: float, kind: type):
    def convert(raw: str):
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{raw!r} must be at least {minimum}")
        return value
    return convert


def _port(raw: str) -> int:
    value = _at_least(0, int)(raw)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port (0..65535)")
    return value

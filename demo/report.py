"""What the demo prints: the live status line, the final table per phase, the story's checks (pure)."""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from demo.verdicts import Verdict


@dataclass
class PhaseResult:
    name: str
    traffic: dict[str, Any]                 # PhaseCounts.snapshot()
    verdict: Verdict | None = None
    alerts: list[str] = field(default_factory=list)   # alert names firing at the phase's end
    emails: list[str] = field(default_factory=list)   # subjects received during the phase
    # chat channel (slack, webhook, telegram) → status ("firing"/"resolved") of each message received during the phase
    notifications: dict[str, list[str]] = field(default_factory=dict)
    # the other monitors' verdicts at the phase's end (trip_duration: regression_table)
    monitors: dict[str, Verdict] = field(default_factory=dict)
    # every message of the phase as (channel, monitor it is about or "", status): the incident rule per monitor
    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def statuses(self, channel: str, monitor: str | None = None) -> list[str]:
        """Status of each message `channel` received in the phase (e-mail: from the subject's tag);
        with `monitor`, only the messages about it (from `messages`)."""
        if monitor is not None:
            return [status for ch, about, status in self.messages if ch == channel and about == monitor]
        if channel == "email":
            return [email_status(s) for s in self.emails]
        return list(self.notifications.get(channel, []))


CHANNELS = ("email", "slack", "webhook", "telegram")
# The incident rule of docs/alerts.md#one-incident-one-message: per channel and monitor, the drift
# phase brings one firing message and the recovery phase one resolved message; the normal phase none.
INCIDENT_RULE = {"normal": {}, "drift": {"firing": 1}, "recovery": {"resolved": 1}}


# "monitor=trip_duration" (e-mail subject), "monitor trip_duration:" (Slack, Telegram)
_MONITOR_IN_MESSAGE = re.compile(r"\bmonitor[= ]([A-Za-z0-9_.-]*[A-Za-z0-9_])")


def message_monitor(text: str, labels: dict[str, Any] | None = None) -> str:
    """The monitor a message is about: the webhook's commonLabels, else its text; "" for none."""
    if labels and labels.get("monitor"):
        return str(labels["monitor"])
    found = _MONITOR_IN_MESSAGE.search(text)
    return found[1] if found else ""


def email_status(subject: str) -> str:
    return "resolved" if subject.startswith("[RESOLVED") else "firing" if subject.startswith("[FIRING") else "?"


def status_line(phase: str, traffic: dict[str, Any] | None, shipper: dict[str, Any],
                verdict: Verdict | None) -> str:
    parts = [f"[{phase}]"]
    if traffic:
        parts.append(f"requests {traffic['sent']}/{traffic['planned']} (errors {traffic['errors']}, "
                     f"feedback {traffic['feedback_sent']})")
    store = "" if shipper.get("store_available", True) else " STORE DOWN, retrying"
    parts.append(f"shipped {shipper['shipped']} (lag {shipper['lag_bytes']} B{store})")
    if verdict is not None:
        at = time.strftime("%H:%M:%S", time.localtime(verdict.last_evaluation)) if verdict.last_evaluation else "-"
        parts.append(f"last verdict {at}: {verdict.summary()}")
        quality = quality_text(verdict)
        if quality:
            parts.append(quality)
    return " | ".join(parts)


def quality_text(verdict: Verdict) -> str:
    """Estimated accuracy/F1 (every row, from the scores, before labels) and, once labels landed,
    the realized ones: `est. acc 0.751 [0.727-0.775] F1 0.170, realized acc 0.284 F1 0.093`."""
    parts = []
    est = verdict.estimated
    if "accuracy" in est:
        lower, upper = verdict.estimated_band.get("accuracy", (None, None))
        band = f" [{lower:.3f}-{upper:.3f}]" if lower is not None else ""
        f1 = f" F1 {est['f1']:.3f}" if "f1" in est else ""
        parts.append(f"est. acc {est['accuracy']:.3f}{band}{f1}")
    if "accuracy" in verdict.quality:
        f1 = f" F1 {verdict.quality['f1']:.3f}" if "f1" in verdict.quality else ""
        parts.append(f"realized acc {verdict.quality['accuracy']:.3f}{f1}")
    elif est:
        parts.append("realized: too few labels yet")
    return ", ".join(parts)


class StatusWriter:
    """Rewrites one terminal line in place; on a pipe or file, prints a line every `every` seconds."""

    def __init__(self, out: TextIO = sys.stdout, every: float = 5.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every = every
        self._last: float | None = None
        self._width = 0

    def update(self, text: str) -> None:
        if self.tty:
            padding = " " * max(0, self._width - len(text))
            self.out.write("\r" + text + padding)
            self._width = len(text)
            self.out.flush()
        elif self._last is None or time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(text, file=self.out, flush=True)

    def done(self, text: str | None = None) -> None:
        """Ends the live line (optionally with a final text) so normal printing can follow."""
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self._width = 0
        if text:
            print(text, file=self.out, flush=True)
        self._last = None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def phase_table(results: list[PhaseResult]) -> str:
    header = ("phase", "requests ok", "rows evaluated", "dataset drift", "drifted features",
              "est. accuracy", "est. F1", "accuracy", "F1", "alerts fired", "e-mails", "slack", "webhook", "telegram")
    rows = [header]
    for r in results:
        v = r.verdict
        rows.append((
            r.name,
            f"{r.traffic['ok']}/{r.traffic['sent']}",
            str(v.rows.get("evaluated", v.rows.get("current", 0))) if v else "-",
            ("yes" if v.dataset_drift else "no") if v and v.available else "no verdict",
            ", ".join(v.drifted_features) if v and v.drifted_features else "-",
            _fmt(v.estimated.get("accuracy")) if v else "-",
            _fmt(v.estimated.get("f1")) if v else "-",
            _fmt(v.quality.get("accuracy")) if v else "-",
            _fmt(v.quality.get("f1")) if v else "-",
            ", ".join(sorted(set(r.alerts))) or "-",
            *(channel_cell(r.statuses(channel)) for channel in CHANNELS),
        ))
    return _render(rows)


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


def regression_table(results: list[PhaseResult], monitor: str) -> str:
    """The regression monitor's story per phase (MAE/RMSE normal vs drift, target and dataset drift).

    Reads only the gauges of docs/metrics.md (mlmon_regression_quality, mlmon_target_drift_*,
    mlmon_dataset_drift); a gauge the log processor does not export shows "-"."""
    header = ("phase", f"{monitor} requests ok", "MAE", "RMSE", "MAE / reference", "target drift",
              "dataset drift", "drifted features")
    rows = [header]
    for r in results:
        v = r.monitors.get(monitor)
        q = v.regression_quality if v else {}
        ref = v.reference_regression_quality if v else {}
        if v is None or v.target_drift is None:
            target = "-"
        else:
            score = f" ({v.target_drift_score:.3g})" if v.target_drift_score is not None else ""
            target = ("yes" if v.target_drift else "no") + score
        rows.append((
            r.name,
            f"{r.traffic.get('duration_ok', 0)}/{r.traffic.get('duration_sent', 0)}",
            _fmt(q.get("mae")), _fmt(q.get("rmse")), _ratio(q.get("mae"), ref.get("mae")),
            target,
            ("yes" if v.dataset_drift else "no") if v and v.available else "-",
            ", ".join(v.drifted_features) if v and v.drifted_features else "-",
        ))
    return _render(rows)


def _render(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def channel_cell(statuses: list[str]) -> str:
    """`0`, or the count with what the messages were: `2 (1 firing, 1 resolved)`."""
    if not statuses:
        return "0"
    kinds = ", ".join(f"{statuses.count(k)} {k}" for k in sorted(set(statuses)))
    return f"{len(statuses)} ({kinds})"


def incident_rule_failures(results: list[PhaseResult], channels: tuple[str, ...] = CHANNELS,
                           monitors: tuple[str, ...] = ()) -> list[str]:
    """Each channel got exactly what INCIDENT_RULE allows in each phase: not nothing, not more.

    With `monitors` the rule holds per monitor (one incident each, Alertmanager groups by monitor);
    a message about no monitor counts for the first one."""
    failures = []
    for r in results:
        allowed = INCIDENT_RULE.get(r.name)
        if allowed is None:
            continue
        for channel in channels:
            for monitor in monitors or (None,):
                if monitor is None:
                    statuses, where = r.statuses(channel), channel
                else:
                    statuses, where = r.statuses(channel, monitor), f"{channel} ({monitor})"
                    if monitor == monitors[0]:
                        statuses += r.statuses(channel, "")
                failures += _rule_failures(statuses, allowed, where, r.name)
    return failures


def _rule_failures(statuses: list[str], allowed: dict[str, int], where: str, phase: str) -> list[str]:
    failures = []
    for kind in ("firing", "resolved"):
        got, want = statuses.count(kind), allowed.get(kind, 0)
        if got != want:
            failures.append(f"{where}: {phase} phase got {got} {kind} message(s), "
                            f"the one-message-per-incident rule allows {want}")
    unknown = len(statuses) - statuses.count("firing") - statuses.count("resolved")
    if unknown:
        failures.append(f"{where}: {phase} phase got {unknown} message(s) that say neither firing nor resolved")
    return failures


def regression_failures(results: list[PhaseResult], monitor: str, alert_ratio: float = 1.5) -> list[str]:
    """The regression monitor's story (only what its gauges show; none exported, nothing claimed):
    the drift phase's MAE above `alert_ratio` x the normal phase's, its target drift found, and
    no target drift in the normal phase."""
    by_name = {r.name: r.monitors.get(monitor) for r in results}
    normal, drift = by_name.get("normal"), by_name.get("drift")
    failures = []
    normal_mae = normal.regression_quality.get("mae") if normal else None
    drift_mae = drift.regression_quality.get("mae") if drift else None
    if normal_mae is not None and drift_mae is not None and not drift_mae > alert_ratio * normal_mae:
        failures.append(f"{monitor}: drift phase MAE {drift_mae:.3f} is not above {alert_ratio:g} x the "
                        f"normal phase's {normal_mae:.3f}")
    if drift is not None and drift.target_drift is False:
        failures.append(f"{monitor}: drift phase: no target drift reported")
    if normal is not None and normal.target_drift:
        failures.append(f"{monitor}: normal phase: target drift reported")
    return failures


def story_failures(results: list[PhaseResult], shifted: set[str], expect_email: bool,
                   channels: tuple[str, ...] = (), monitors: tuple[str, ...] = (),
                   regression_monitors: tuple[str, ...] = ()) -> list[str]:
    """Why the story did not hold (empty when it did): the exit condition of `--once`. `channels`: the
    channels Alertmanager delivers to, checked against the incident rule (none without alerting),
    per monitor of `monitors` when given; `regression_monitors`: see regression_failures."""
    by_name = {r.name: r for r in results}
    failures = []
    normal, drift = by_name.get("normal"), by_name.get("drift")
    if normal is None or normal.verdict is None or not normal.verdict.available:
        failures.append("normal phase: the log processor gave no verdict")
    elif normal.verdict.dataset_drift:
        failures.append(f"normal phase: dataset drift reported ({', '.join(normal.verdict.drifted_features)})")
    if normal is not None and any("DataDriftDetected" in s for s in normal.emails):
        failures.append("normal phase: a DataDriftDetected e-mail arrived")
    if drift is None or drift.verdict is None or not drift.verdict.available:
        failures.append("drift phase: the log processor gave no verdict")
    else:
        if not drift.verdict.dataset_drift:
            failures.append("drift phase: no dataset drift reported")
        missing = sorted(shifted - set(drift.verdict.drifted_features))
        if missing:
            failures.append(f"drift phase: shifted feature(s) not flagged: {', '.join(missing)}")
    if expect_email and not any("DataDriftDetected" in s for r in results for s in r.emails):
        failures.append("no DataDriftDetected e-mail received")
    recovery = by_name.get("recovery")
    if recovery is not None and recovery.verdict is not None and recovery.verdict.dataset_drift:
        failures.append(f"recovery phase: dataset drift still reported ({', '.join(recovery.verdict.drifted_features)})")
    if channels:
        failures += incident_rule_failures(results, channels, monitors)
    for monitor in regression_monitors:
        failures += regression_failures(results, monitor)
    return failures

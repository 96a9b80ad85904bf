"""What the demo prints: the live status line, the final table per phase, the story's checks (pure)."""
from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from demo.verdicts import Verdict
from log_processor.monitors import REGRESSION, Monitor


@dataclass
class PhaseResult:
    name: str
    traffic: dict[str, Any]                 # PhaseCounts.snapshot(): requests, and `models` (name -> counts)
    verdicts: dict[str, Verdict] = field(default_factory=dict)   # every monitor's verdict at the phase's end
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (alert name, monitor or "") firing at the end
    emails: list[str] = field(default_factory=list)   # subjects received during the phase
    # every message of the phase as (channel, monitor it is about or "", status): the incident rule per monitor
    messages: list[tuple[str, str, str]] = field(default_factory=list)
    # the same messages with what they say, (channel, monitor, status, text): the city phase's checks
    texts: list[tuple[str, str, str, str]] = field(default_factory=list)

    def statuses(self, channel: str, monitor: str) -> list[str]:
        """Status ("firing", "resolved", "?") of each message `channel` received in the phase about
        `monitor` ("": about no monitor)."""
        return [status for ch, about, status in self.messages if ch == channel and about == monitor]

    def model_counts(self, model: str | None) -> dict[str, Any]:
        """The traffic counts of one model's calls (a monitor's model_name); None: the requests'."""
        return self.traffic if model is None else self.traffic.get("models", {}).get(model, {})


CHANNELS = ("email", "slack", "webhook", "telegram")
# The incident rule of docs/alerts.md#one-incident-one-message: per channel and monitor, the drift
# phase brings one firing message and the recovery phase one resolved message; the normal phase none.
# The city phase (demo/city.py) opens an incident for each monitor it is about, none for the others.
# That monitor's Alertmanager group still holds the recovery's resolved alerts (Prometheus re-sends a
# resolved alert for 15 minutes), so its new alerts go out at the group's next flush instead of after
# a fresh group_wait, and an alert that starts after that flush comes as an update: at least one
# firing message, and no resolved one (docs/demo.md#one-city).
INCIDENT_RULE = {"normal": {}, "drift": {"firing": 1}, "recovery": {"resolved": 1}, "city": {}}
# With --stall the normal phase has an incident of its own per monitor: EventsNotArriving fires, then resolves.
STALL_RULE = {**INCIDENT_RULE, "normal": {"firing": 1, "resolved": 1}}


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
                verdicts: dict[str, Verdict], monitors: tuple[Monitor, ...] = (), clock: bool = True) -> str:
    """`[phase] | requests | shipped | <monitor>: verdict, quality | ...`, one part per monitor in
    `monitors` (its task decides the quality shown). `clock=False` leaves out the time of the latest
    evaluation, so that two lines that differ only in it compare equal."""
    parts = [f"[{phase}]"]
    if traffic:
        parts.append(f"requests {traffic['sent']}/{traffic['planned']} (errors {traffic['errors']}, "
                     f"feedback {traffic['feedback_sent']})")
    store = "" if shipper.get("store_available", True) else " STORE DOWN, retrying"
    parts.append(f"shipped {shipper['shipped']} (lag {shipper['lag_bytes']} B{store})")
    latest = max((v.last_evaluation for v in verdicts.values()), default=0.0)
    if clock and latest:
        parts.append(f"verdicts of {time.strftime('%H:%M:%S', time.localtime(latest))}")
    for monitor in monitors:
        verdict = verdicts.get(monitor.name)
        if verdict is None:
            continue
        quality = quality_view(monitor)[0](verdict)
        parts.append(f"{monitor.name}: {verdict.summary()}" + (f", {quality}" if quality else ""))
    return " | ".join(parts)


def regression_text(verdict: Verdict) -> str:
    """`MAE 8.78 (3.69x reference)` once the window's labelled rows give one."""
    mae, reference = verdict.regression_quality.get("mae"), verdict.reference_regression_quality.get("mae")
    if mae is None:
        return ""
    return f"MAE {mae:.2f}" + (f" ({mae / reference:.2f}x reference)" if reference else "")


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
    """The live status line. On a terminal it is rewritten in place (carriage return, the line cut one
    column short of the terminal's width so the cursor never wraps, then clear to the end of the line). On a pipe or a file a line is printed
    only when it changed: its `key` (the text without what moves on its own, such as a clock) differs
    from the last printed one, at most every `every` seconds within a phase (the `[phase]` tag
    changing prints at once)."""

    def __init__(self, out: TextIO = sys.stdout, every: float = 5.0, width: int | None = None) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every = every
        self.width = width
        self._last_key: str | None = None
        self._last_at = 0.0
        self._live = False

    def update(self, text: str, key: str | None = None) -> None:
        if self.tty:
            width = self.width or shutil.get_terminal_size().columns
            self.out.write("\r" + text[:max(1, width - 1)] + "\x1b[K")
            self.out.flush()
            self._live = True
            return
        key = text if key is None else key
        if key == self._last_key:
            return
        new_phase = self._last_key is None or _tag(key) != _tag(self._last_key)
        if new_phase or time.monotonic() - self._last_at >= self.every:
            self._last_key, self._last_at = key, time.monotonic()
            print(text, file=self.out, flush=True)

    def done(self, text: str | None = None) -> None:
        """Ends the live line (optionally with a final text) so normal printing can follow."""
        if self.tty and self._live:
            self.out.write("\r\x1b[K")
            self._live = False
        if text:
            print(text, file=self.out, flush=True)
        self._last_key = None


def _tag(line: str) -> str:
    return line.split("]", 1)[0]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _classification_columns(v: Verdict | None) -> dict[str, str]:
    return {
        "rows evaluated": str(v.rows.get("evaluated", v.rows.get("current", 0))) if v else "-",
        "dataset drift": ("yes" if v.dataset_drift else "no") if v and v.available else "no verdict",
        "drifted features": ", ".join(v.drifted_features) if v and v.drifted_features else "-",
        "est. accuracy": _fmt(v.estimated.get("accuracy")) if v else "-",
        "est. F1": _fmt(v.estimated.get("f1")) if v else "-",
        "accuracy": _fmt(v.quality.get("accuracy")) if v else "-",
        "F1": _fmt(v.quality.get("f1")) if v else "-",
    }


def _regression_columns(v: Verdict | None) -> dict[str, str]:
    """Only the gauges of docs/metrics.md (mlmon_regression_quality, mlmon_target_drift_*,
    mlmon_dataset_drift); a gauge the log processor does not export shows "-"."""
    q = v.regression_quality if v else {}
    ref = v.reference_regression_quality if v else {}
    if v is None or v.target_drift is None:
        target = "-"
    else:
        score = f" ({v.target_drift_score:.3g})" if v.target_drift_score is not None else ""
        target = ("yes" if v.target_drift else "no") + score
    return {
        "MAE": _fmt(q.get("mae")), "RMSE": _fmt(q.get("rmse")), "MAE / reference": _ratio(q.get("mae"), ref.get("mae")),
        "target drift": target,
        "dataset drift": ("yes" if v.dataset_drift else "no") if v and v.available else "-",
        "drifted features": ", ".join(v.drifted_features) if v and v.drifted_features else "-",
    }


def task_columns(monitor: Monitor, verdict: Verdict | None) -> dict[str, str]:
    """The verdict's cells a monitor's task has (header -> cell): regression errors and target drift,
    or classification quality (binary and multi-class alike)."""
    return quality_view(monitor)[1](verdict)


# How a task's quality shows in the demo: (status-line text, table cells). One entry per task that
# shows differently from the classifiers (binary and multi-class share theirs).
QUALITY_VIEWS: dict[str, tuple[Callable[[Verdict], str], Callable[[Verdict | None], dict[str, str]]]] = {
    REGRESSION: (regression_text, _regression_columns),
}


def quality_view(monitor: Monitor) -> tuple[Callable[[Verdict], str], Callable[[Verdict | None], dict[str, str]]]:
    return QUALITY_VIEWS.get(monitor.task, (quality_text, _classification_columns))


def monitor_table(results: list[PhaseResult], monitor: Monitor) -> str:
    """One monitor's story per phase: its model's requests, the cells of its task, the alerts about
    it that fired, and the messages about it on each channel (what the incident rule counts)."""
    rows: list[tuple[str, ...]] = []
    for r in results:
        counts = r.model_counts(monitor.model_name)
        cells = {
            "phase": r.name,
            f"{monitor.model_name or 'all'} requests ok": f"{counts.get('ok', 0)}/{counts.get('sent', 0)}",
            **task_columns(monitor, r.verdicts.get(monitor.name)),
            **({"segments flagged": segments_cell(r.verdicts.get(monitor.name))} if monitor.segments else {}),
            "alerts fired": ", ".join(sorted({name for name, about in r.alerts if about == monitor.name})) or "-",
            **{("e-mails" if c == "email" else c): channel_cell(r.statuses(c, monitor.name)) for c in CHANNELS},
        }
        if not rows:
            rows.append(tuple(cells))
        rows.append(tuple(cells.values()))
    return f"{monitor.name} ({monitor.task}):\n" + _render(rows)


def segments_cell(v: Verdict | None) -> str:
    """`context.city=Springfield (conv_rate)` for each flagged segment, or `-`."""
    if v is None or not v.flagged_segments:
        return "-"
    return "; ".join(f"{segment} ({', '.join(columns)})" if columns else segment
                     for segment, columns in v.flagged_segments.items())


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


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


def incident_rule_failures(results: list[PhaseResult], channels: tuple[str, ...],
                           monitors: tuple[str, ...], rule: dict[str, dict[str, int]] = INCIDENT_RULE,
                           city_monitors: tuple[str, ...] = ()) -> list[str]:
    """Each channel got exactly what INCIDENT_RULE allows in each phase about each monitor: not
    nothing, not more (Alertmanager groups by monitor: one incident each); in the city phase, at
    least one firing message and no other for `city_monitors`. A message about no monitor belongs to no incident of the story,
    so none is allowed."""
    failures = []
    for r in results:
        if r.name not in rule:
            continue
        for channel in channels:
            for monitor in monitors:
                statuses, where = r.statuses(channel, monitor), f"{channel} ({monitor})"
                if r.name == "city" and monitor in city_monitors:
                    failures += _city_rule_failures(statuses, where)
                else:
                    failures += _rule_failures(statuses, rule[r.name], where, r.name)
            stray = r.statuses(channel, "")
            if stray:
                failures.append(f"{channel}: {r.name} phase got {len(stray)} message(s) about no monitor "
                                f"({channel_cell(stray)}), which no incident of the story allows")
    return failures


def _city_rule_failures(statuses: list[str], where: str) -> list[str]:
    failures = [] if "firing" in statuses else [f"{where}: city phase got no firing message"]
    if statuses.count("firing") != len(statuses):
        failures.append(f"{where}: city phase got {channel_cell(statuses)}: only firing messages belong to it")
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


def regression_failures(results: list[PhaseResult], monitor: Monitor) -> list[str]:
    """A regression monitor's own story (only what its gauges show; none exported, nothing claimed):
    the drift phase's MAE above its quality.alert_ratio (1.5 when unset) x the normal phase's, its
    target drift found, and no target drift in the normal phase."""
    alert_ratio = monitor.quality_alert_ratio or 1.5
    by_name = {r.name: r.verdicts.get(monitor.name) for r in results}
    normal, drift = by_name.get("normal"), by_name.get("drift")
    failures = []
    normal_mae = normal.regression_quality.get("mae") if normal else None
    drift_mae = drift.regression_quality.get("mae") if drift else None
    if normal_mae is not None and drift_mae is not None and not drift_mae > alert_ratio * normal_mae:
        failures.append(f"{monitor.name}: drift phase MAE {drift_mae:.3f} is not above {alert_ratio:g} x the "
                        f"normal phase's {normal_mae:.3f}")
    if drift is not None and drift.target_drift is False:
        failures.append(f"{monitor.name}: drift phase: no target drift reported")
    if normal is not None and normal.target_drift:
        failures.append(f"{monitor.name}: normal phase: target drift reported")
    return failures


# What a task adds to the drift story every monitor shares (a task without an entry adds nothing).
TASK_STORIES = {REGRESSION: regression_failures}


def drift_failures(results: list[PhaseResult], monitor: Monitor, shifted: set[str]) -> list[str]:
    """The story every monitor shares: a verdict and no dataset drift in the normal phase, dataset
    drift on each of its features that the traffic shifts in the drift phase, none after the recovery."""
    by_name = {r.name: r.verdicts.get(monitor.name) for r in results}
    name, failures = monitor.name, []
    normal, drift, recovery = by_name.get("normal"), by_name.get("drift"), by_name.get("recovery")
    if normal is None or not normal.available:
        failures.append(f"{name}: normal phase: the log processor gave no verdict")
    elif normal.dataset_drift:
        failures.append(f"{name}: normal phase: dataset drift reported ({', '.join(normal.drifted_features)})")
    if drift is None or not drift.available:
        failures.append(f"{name}: drift phase: the log processor gave no verdict")
    else:
        if not drift.dataset_drift:
            failures.append(f"{name}: drift phase: no dataset drift reported")
        missing = sorted((shifted & set(monitor.feature_names)) - set(drift.drifted_features))
        if missing:
            failures.append(f"{name}: drift phase: shifted feature(s) not flagged: {', '.join(missing)}")
    if "recovery" in by_name and recovery is not None and recovery.dataset_drift:
        failures.append(f"{name}: recovery phase: dataset drift still reported "
                        f"({', '.join(recovery.drifted_features)})")
    return failures


def story_failures(results: list[PhaseResult], monitors: tuple[Monitor, ...], shifted: set[str],
                   expect_email: bool, channels: tuple[str, ...] = (), stall: bool = False,
                   city_monitors: tuple[str, ...] = ()) -> list[str]:
    """Why the story did not hold (empty when it did): the exit condition of `--once`. For every
    monitor: drift_failures and its task's story (TASK_STORIES); a DataDriftDetected e-mail when
    `expect_email` (none in the normal phase); `channels`: the channels Alertmanager delivers to,
    checked against the incident rule per monitor (none without alerting); `stall`: the normal phase
    stopped the shipper (STALL_RULE, and EventsNotArriving must have fired for every monitor);
    `city_monitors`: the monitors the city phase opens an incident for (its own checks: demo/city.py)."""
    failures = []
    for monitor in monitors:
        failures += drift_failures(results, monitor, shifted)
        task_story = TASK_STORIES.get(monitor.task)
        if task_story is not None:
            failures += task_story(results, monitor)
    by_name = {r.name: r for r in results}
    normal = by_name.get("normal")
    if normal is not None and any("DataDriftDetected" in s for s in normal.emails):
        failures.append("normal phase: a DataDriftDetected e-mail arrived")
    if expect_email and not any("DataDriftDetected" in s for r in results for s in r.emails):
        failures.append("no DataDriftDetected e-mail received")
    if channels:
        failures += incident_rule_failures(results, channels, tuple(m.name for m in monitors),
                                           STALL_RULE if stall else INCIDENT_RULE, city_monitors)
    if stall and channels and normal is not None:
        blind = {about for name, about in normal.alerts if name == "EventsNotArriving"}
        failures += [f"{m.name}: normal phase: the shipper stopped, and EventsNotArriving never fired"
                     for m in monitors if m.name not in blind]
    return failures

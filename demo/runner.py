"""The demo's story on a running embedded stack: normal traffic, drift, recovery, and what the stack saw.

For each phase: replay the traffic, wait until its ground truth was sent, its events shipped and
the log processor evaluated every monitor twice (so each verdict describes this phase), read the
verdicts from /metrics; in the drift phase also wait for the DataDriftDetected e-mail and a firing
message on every channel for every monitor, in the recovery phase (normal traffic again, so the
incidents clear) for a resolved message on every channel for every monitor that fired. All waits
poll with deadlines and keep the status line moving.

Every monitor of the monitors file is treated alike: the story knows them only as log_processor.monitors
Monitor objects (name, task, model_name), so a monitor added to the file needs no code here.
"""
from __future__ import annotations

import math
import threading
import time
import urllib.error
from typing import Callable

from demo.city import PHASE as CITY_PHASE, CityStory, message_body
from demo.notification_sink import CHANNELS as CHAT_CHANNELS
from demo.report import PhaseResult, StatusWriter, email_status, message_monitor, status_line
from demo.stack import EmbeddedStack
from demo.traffic import PhaseCounts, TrafficGenerator, TrafficSettings
from demo.verdicts import Verdict, fetch_verdicts
from log_processor.monitors import Monitor

PHASES = ("normal", "drift", "recovery", CITY_PHASE)
STALL_MARGIN = 10.0     # seconds of --stall's normal traffic beyond the stall (it starts ~3 s in)
# serving.data traffic per phase (the city phase's is demo/city.py's: normal but for one city)
VARIANTS = {"normal": "normal", "drift": "drift", "recovery": "normal", CITY_PHASE: "normal"}


class Story:
    def __init__(self, stack: EmbeddedStack, monitors: tuple[Monitor, ...], status: StatusWriter,
                 say: Callable[[str], None] = print, interrupted: threading.Event | None = None) -> None:
        self.stack = stack
        self.interrupted = interrupted or threading.Event()     # set by the Ctrl-C handler (__main__)
        self.settings = stack.settings
        self.monitors = tuple(monitors)
        self.names = tuple(m.name for m in self.monitors)
        self.status = status
        self.say = say
        self.notes: list[str] = []      # waits that ran out, for the final report
        self.phase = "starting"
        self.phase_started: dict[str, float] = {}  # phase -> time.time() it began
        self.counts: PhaseCounts | None = None
        self.verdicts: dict[str, Verdict] = {}      # monitor name -> its latest verdict
        self.city = CityStory.shipped(self.settings.seed + len(PHASES) - 1)
        self.city_monitors: tuple[str, ...] = ()    # the monitors the city phase ran for (none: skipped)

    def run(self) -> list[PhaseResult]:
        s = self.settings
        traffic = TrafficGenerator(TrafficSettings(base_url=self.stack.urls.serving, rate=s.rate,
                                                   feedback_delay=s.feedback_delay, seed=s.seed))
        results = []
        # The recovery replays as many normal requests as the window holds, so it ends all normal again.
        # With --stall the normal phase's traffic goes on through the stall (and a few seconds each side).
        normal = max(s.normal_requests, math.ceil(s.rate * (s.stall + STALL_MARGIN))) if s.stall else s.normal_requests
        lengths = (normal, s.drift_requests, s.normal_requests)
        phases = PHASES[:3] if s.recovery else PHASES[:2]
        try:
            for name, n in zip(phases, lengths):
                results.append(self._phase(traffic, name, n))
            city = self._city_traffic() if s.recovery and s.city else None
            if city is not None:
                results.append(self._phase(traffic, CITY_PHASE, len(city[0]), *city))
        finally:
            traffic.close()
        return results

    def _city_traffic(self):
        """The city phase's requests, one window of them: (the ranker's, trip_duration's, normal), or
        None with a note when the phase cannot tell its story."""
        from serving.data import generate_duration_traffic
        window = min(self.settings.normal_requests, self.settings.drift_requests)
        frame = self.city.traffic(window)
        reason = self.city.skip_reason(self.monitors, frame)
        if reason:
            self.notes.append(f"city phase skipped: {reason}")
            return None
        self.city_monitors = tuple(m.name for m in self.city.monitors(self.monitors))
        return frame, generate_duration_traffic("normal", window, self.city.seed)

    def idle(self, stop: threading.Event) -> None:
        """Keep the status line alive until `stop` is set (the stack stays up for exploring)."""
        self.phase = "idle, Ctrl-C to stop"
        self.counts = None
        while not stop.wait(1.0):
            self.refresh()

    def refresh(self) -> None:
        """Update the status line; every wait of the story passes here about once a second, so a Ctrl-C
        whose KeyboardInterrupt was lost (raised inside a __del__ or a callback, where Python only
        prints it) still stops the story."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt
        try:
            self.verdicts = fetch_verdicts(self.stack.urls.log_processor + "/metrics", self.names)
        except (urllib.error.URLError, OSError, ValueError):
            pass
        traffic = self.counts.snapshot() if self.counts else None
        shipper = self.stack.shipper.stats.snapshot()
        line = status_line(self.phase, traffic, shipper, self.verdicts, self.monitors)
        self.status.update(line, key=status_line(self.phase, traffic, shipper, self.verdicts, self.monitors,
                                                 clock=False))

    # --- one phase ----------------------------------------------------------------------------
    def _phase(self, traffic: TrafficGenerator, name: str, n_requests: int, frame=None, durations=None) -> PhaseResult:
        """One phase: `frame` and `durations` are its requests when given (the city phase's), else
        TrafficGenerator draws the variant's."""
        started = time.time()
        self.phase_started[name] = started
        self.phase = name
        holder: list[PhaseCounts] = []
        sender = threading.Thread(target=lambda: holder.append(traffic.run_phase(name, VARIANTS[name], n_requests,
                                                                                 traffic=frame, durations=durations)),
                                  name=f"traffic-{name}", daemon=True)
        sender.start()
        self.counts = None
        stall = _Stall(self, self.settings.stall) if name == "normal" and self.settings.stall else None
        while sender.is_alive():
            if traffic.phases and traffic.phases[-1].phase == name:
                self.counts = traffic.phases[-1]
            self.refresh()
            if stall:
                stall.step(self.counts)
            sender.join(0.5)
        if stall:
            stall.finish()
        counts = holder[0]
        self.counts = counts
        self._wait(lambda: traffic.pending_feedback() == 0, self.settings.feedback_delay + 30,
                   f"{name}: ground truth sent", f"{name}: waiting for delayed feedback")
        self._wait(self._shipped_everything, 60, f"{name}: events shipped", f"{name}: shipping")
        baseline = {m: self._evaluations(m) for m in self.names}
        self._wait(lambda: all(self._evaluations(m) >= n + 2 for m, n in baseline.items()),
                   30 + 4 * self.settings.eval_interval,
                   f"{name}: two evaluations of every monitor after shipping", f"{name}: waiting for the log processor")
        verdicts = dict(self.verdicts)
        if name == "drift" and self.stack.prometheus is not None:
            self._wait(lambda: any("DataDriftDetected" in m.subject for m in self.stack.mail.messages()),
                       self.settings.alert_timeout, "drift: DataDriftDetected e-mail",
                       "drift: waiting for the alert e-mail")
            self._wait(lambda: self._every_incident_opened(started),
                       self.settings.alert_timeout, "drift: a firing message on every channel for every monitor",
                       "drift: waiting for every monitor's firing messages")
        if name == "recovery" and self.stack.prometheus is not None:
            opened = self._opened_since(self.phase_started.get("drift", started))
            self._wait(lambda: all(self._every_channel_has("resolved", started, m) for m in opened),
                       self.settings.alert_timeout, "recovery: a resolved message on every channel for every monitor",
                       "recovery: waiting for the resolved messages")
        if name == CITY_PHASE and self.stack.prometheus is not None:
            self._wait(lambda: self._city_told(started), self.settings.alert_timeout,
                       "city: SegmentDrift's message on every channel", f"city: waiting for SegmentDrift ({self.city.segment})")
        if stall:
            stall.wait_for_messages(started)
        alerts = self._firing_alerts() + (sorted(stall.seen) if stall else [])
        texts = self._texts_since(started)
        result = PhaseResult(name, counts.snapshot(), verdicts, alerts=sorted(set(alerts)),
                             emails=[m.subject for m in self.stack.mail.messages()
                                     if _received_at(m.path.name) >= started],
                             messages=[t[:3] for t in texts], texts=texts)
        self.status.done(f"{name:>8} phase: {counts.ok}/{counts.sent} requests ok; "
                         + "; ".join(f"{m}: {verdicts[m].summary() if m in verdicts else 'no verdict'}"
                                     for m in self.names))
        return result

    def _city_told(self, started: float) -> bool:
        """Every channel has a firing message since `started` naming SegmentDrift in the city, for every
        monitor of the city phase."""
        texts = self._texts_since(started)
        channels = ("email", *(CHAT_CHANNELS if self.stack.notifications else ()))
        return all(self.city.telling(texts, c, m) for c in channels for m in self.city_monitors)

    def _messages_since(self, started: float) -> list[tuple[str, str, str]]:
        """(channel, monitor, status) of every message of the phase, for the incident rule per monitor."""
        return [t[:3] for t in self._texts_since(started)]

    def _texts_since(self, started: float) -> list[tuple[str, str, str, str]]:
        """(channel, monitor, status, what it says) of every message since `started`."""
        messages = [("email", message_monitor(m.subject), email_status(m.subject), f"{m.subject}\n{m.body}")
                    for m in self.stack.mail.messages() if _received_at(m.path.name) >= started]
        sink = self.stack.notifications
        for channel in (CHAT_CHANNELS if sink else ()):
            messages += [(channel, message_monitor(m.text, m.body.get("commonLabels")), m.status,
                          message_body(channel, m.text, m.body))
                         for m in sink.messages(channel) if m.received_at >= started]
        return messages

    def _opened_since(self, started: float) -> list[str]:
        """The monitors with a firing message since `started`: the incidents the recovery must close."""
        return [m for m in self.names
                if any(about == m and status == "firing" for _, about, status in self._messages_since(started))]

    def _every_incident_opened(self, started: float) -> bool:
        """A firing message since `started` on every channel for every monitor. Each monitor opens its
        own incident (Alertmanager groups by monitor), and a regression monitor's errors grow only as
        the drift phase's delayed feedback lands, so its message may come well after another's: it
        still belongs to this phase."""
        return all(self._every_channel_has("firing", started, m) for m in self.names)

    def _every_channel_has(self, status: str, started: float, monitor: str) -> bool:
        """A `status` message since `started` on e-mail and every chat channel, about `monitor`."""
        channels = {"email", *(CHAT_CHANNELS if self.stack.notifications else ())}
        have = {channel for channel, about, got in self._messages_since(started)
                if got == status and about == monitor}
        return channels <= have

    def _shipped_everything(self) -> bool:
        stats = self.stack.shipper.stats
        return stats.lag_bytes == 0 and stats.store_available and self.stack.events_file.exists()

    def _evaluations(self, monitor: str) -> int:
        verdict = self.verdicts.get(monitor)
        return verdict.evaluations if verdict else 0

    def _firing_alerts(self) -> list[tuple[str, str]]:
        """(alert name, monitor or "") of every alert firing in Prometheus now."""
        if self.stack.prometheus is None:
            return []
        try:
            return sorted({(a["labels"]["alertname"], a["labels"].get("monitor", ""))
                           for a in self.stack.prometheus.alerts() if a.get("state") == "firing"})
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return []

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str, phase: str) -> bool:
        self.phase = phase
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            if condition():
                return True
            if time.monotonic() > deadline:
                self.notes.append(f"gave up waiting for {what} after {timeout:.0f}s")
                return False
            time.sleep(0.5)


class _Stall:
    """--stall SECONDS in the normal phase: once every monitor has read a prediction and traffic runs, the
    shipper stops (as a crash would leave it) for SECONDS while traffic goes on, then restarts from its
    offsets and ships the backlog. Meanwhile each monitor goes blind (`no_data`) and EventsNotArriving
    fires; the phase then waits for its firing and its resolved message on every channel, for every
    monitor (docs/demo.md#a-stalled-pipeline)."""

    def __init__(self, story: "Story", seconds: float):
        self.story, self.seconds = story, seconds
        self.stopped_at: float | None = None       # time.time()
        self.restarted = False
        self.seen: set[tuple[str, str]] = set()   # (alert, monitor) seen firing during the phase

    def step(self, counts: PhaseCounts | None) -> None:
        story = self.story
        if self.stopped_at is None:
            ready = counts is not None and counts.sent >= 3 * story.settings.rate and all(
                story.verdicts.get(m) is not None and story.verdicts[m].newest_event for m in story.names)
            if ready:
                story.stack.stop_shipper()
                self.stopped_at = time.time()
                story.phase = f"normal: shipper stopped for {self.seconds:g}s"
            return
        if story.stack.prometheus is not None:
            self.seen.update(story._firing_alerts())
        if not self.restarted and time.time() - self.stopped_at >= self.seconds:
            story.stack.restart_shipper()
            self.restarted = True
            story.phase = "normal"

    def finish(self) -> None:
        """The traffic ended: see the stall out (it may not have started, with traffic too short)."""
        if self.stopped_at is None:
            self.story.notes.append("--stall: the shipper was never stopped (no prediction read before the "
                                    "normal traffic ended)")
            return
        while not self.restarted:
            self.story.refresh()
            self.step(None)
            time.sleep(0.5)

    def wait_for_messages(self, started: float) -> None:
        story = self.story
        if self.stopped_at is None or story.stack.prometheus is None:
            return
        try:
            self._wait_for_messages(started)
        finally:
            first = [at for channel, at in self._first_blind_messages().items()]
            story.notes.append(f"--stall: the shipper stopped at {time.strftime('%H:%M:%S', time.localtime(self.stopped_at))} "
                               f"for {self.seconds:g}s; EventsNotArriving's first message "
                               + (f"{min(first) - self.stopped_at:.0f}s later" if first else "never came"))

    def _first_blind_messages(self) -> dict[str, float]:
        """Each channel's first message since the stall that names EventsNotArriving: its time."""
        found: dict[str, float] = {}
        mail = self.story.stack.mail
        for m in mail.messages() if mail else []:
            at = _received_at(m.path.name)
            if at >= (self.stopped_at or 0) and "EventsNotArriving" in m.subject:
                found.setdefault("email", at)
        sink = self.story.stack.notifications
        for channel in (CHAT_CHANNELS if sink else ()):
            for m in sink.messages(channel):
                if m.received_at >= (self.stopped_at or 0) and "EventsNotArriving" in (m.text + str(m.body)):
                    found.setdefault(channel, m.received_at)
        return found

    def _wait_for_messages(self, started: float) -> None:
        story = self.story
        story._wait(lambda: self._observe() and all(story._every_channel_has("firing", started, m) for m in story.names),
                    story.settings.alert_timeout, "normal: EventsNotArriving's message on every channel",
                    "normal: waiting for the blind alert's messages")
        story._wait(lambda: self._observe() and all(story._every_channel_has("resolved", started, m)
                                                    for m in story.names),
                    story.settings.alert_timeout, "normal: EventsNotArriving's resolved message on every channel",
                    "normal: waiting for the blind alert's resolved messages")

    def _observe(self) -> bool:
        self.seen.update(self.story._firing_alerts())
        return True


def _received_at(filename: str) -> float:
    """The mail sink names files `<time_ns>-<n>.eml`."""
    try:
        return int(filename.split("-", 1)[0]) / 1e9
    except ValueError:
        return 0.0

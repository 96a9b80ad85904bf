"""Replays serving.data traffic through the real HTTP API: predictions now, ground truth later.

Each request offers its candidate drivers to `POST /predict`; the answer names the chosen driver,
and that driver's ground-truth outcome goes to `POST /feedback` after `feedback_delay` seconds
(a delay queue, so late labels cost no thread each). Each request also asks the second model,
`POST /predict/duration`, for one driver of the same population
(serving.data.generate_duration_traffic) and sends that trip's realized duration to
`POST /feedback/duration` just as late. Requests are paced at `rate` per second by send time, not
by answer time, so a slow answer does not slow the offered load.

    python -m demo.traffic --normal 300 --drift 300 --rate 30
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

from demo.delay_queue import DelayQueue
from common.env import SettingsError, env_number, flag, setting
from serving.model import DURATION_MODEL_NAME, MODEL_NAME

log = logging.getLogger("demo.traffic")

# (status, parsed JSON body or None); status 0 when no HTTP answer came at all.
Response = tuple[int, Any]
Poster = Callable[[str, Mapping[str, Any], float], Response]


def post_json(url: str, body: Mapping[str, Any], timeout: float) -> Response:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return 0, {"error": str(exc)}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class TrafficSettings:
    base_url: str = "http://127.0.0.1:8000"
    rate: float = 20.0           # requests per second
    normal_requests: int = 600   # phase lengths, in requests
    drift_requests: int = 600
    feedback_delay: float = 2.0  # seconds between a prediction and its ground truth
    concurrency: int = 4         # requests in flight at most
    timeout: float = 5.0
    seed: int = 42
    duration: bool = True        # also replay trip_duration's requests (/predict/duration, /feedback/duration)
    cities: bool = True          # send each /predict the rider's city (serving.data.draw_cities), logged as context.city

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrafficSettings":
        env = os.environ if env is None else env

        def get(name: str, default: Any, kind: type, minimum: float) -> Any:
            return env_number(env, f"TRAFFIC_{name}", default, kind, minimum)

        return cls(
            base_url=(env.get("TRAFFIC_BASE_URL") or cls.base_url).rstrip("/"),
            rate=get("RATE", cls.rate, float, 0.1),
            normal_requests=get("NORMAL_REQUESTS", cls.normal_requests, int, 0),
            drift_requests=get("DRIFT_REQUESTS", cls.drift_requests, int, 0),
            feedback_delay=get("FEEDBACK_DELAY", cls.feedback_delay, float, 0),
            concurrency=get("CONCURRENCY", cls.concurrency, int, 1),
            timeout=get("TIMEOUT", cls.timeout, float, 0.1),
            seed=get("SEED", cls.seed, int, 0),
            duration=setting(env, "TRAFFIC_DURATION", cls.duration, flag),
            cities=setting(env, "TRAFFIC_CITIES", cls.cities, flag),
        )


@dataclass
class ModelCounts:
    """One model's side of a phase: its predictions and their late ground truth."""
    sent: int = 0
    ok: int = 0
    errors: int = 0
    feedback_sent: int = 0
    feedback_ok: int = 0
    feedback_errors: int = 0


@dataclass
class PhaseCounts:
    """Counters of one phase; feedback may finish after the phase itself (it is late by design).

    `sent`, `ok` and `errors` count requests (each asks every model of the phase once: ok when every
    model answered); `models` counts each model's own calls by its name (the `model.name` of its
    events, which a monitor's `model_name` selects)."""
    phase: str
    variant: str
    planned: int
    sent: int = 0
    ok: int = 0
    errors: int = 0
    models: dict[str, ModelCounts] = field(default_factory=dict)
    started_at: float = 0.0    # unix time
    finished_at: float = 0.0   # unix time the last request of the phase was answered
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, model: str | None = None, **increments: int) -> None:
        """Add to the request counters, or with `model` to that model's."""
        with self._lock:
            target = self if model is None else self.models.setdefault(model, ModelCounts())
            for name, value in increments.items():
                setattr(target, name, getattr(target, name) + value)

    @property
    def feedback_sent(self) -> int:
        with self._lock:
            return sum(m.feedback_sent for m in self.models.values())

    def snapshot(self) -> dict[str, Any]:
        """Plain values: the request counters, `feedback_sent` over every model, and `models`
        (name -> that model's counters)."""
        with self._lock:
            snap = {f.name: getattr(self, f.name) for f in fields(self)
                    if not f.name.startswith("_") and f.name != "models"}
            snap["models"] = {name: asdict(counts) for name, counts in self.models.items()}
        snap["feedback_sent"] = sum(m["feedback_sent"] for m in snap["models"].values())
        return snap


def feedback_outcome(driver_ids: list[int], outcomes: list[int], chosen: int) -> int | None:
    """The ground truth of the driver serving chose, or None when it chose an unknown one."""
    try:
        return int(outcomes[list(driver_ids).index(chosen)])
    except ValueError:
        return None


class TrafficGenerator:
    def __init__(self, settings: TrafficSettings, post: Poster = post_json) -> None:
        self.settings = settings
        self._post = post
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="traffic")
        self._in_flight = threading.BoundedSemaphore(settings.concurrency)
        self._feedback = DelayQueue()
        self._outstanding = 0  # feedback scheduled but not yet answered
        self._outstanding_cond = threading.Condition()
        self.phases: list[PhaseCounts] = []

    def run_phase(self, phase: str, variant: str, n_requests: int, stop: threading.Event | None = None,
                  traffic: Any = None, durations: Any = None) -> PhaseCounts:
        """Send `n_requests` of the variant's traffic at the configured rate; returns when all are answered.

        `traffic` (a frame with driver_ids/outcomes) defaults to serving.data.generate_traffic and, when
        settings.duration, `durations` (driver_id/duration_minutes) to generate_duration_traffic of the
        same seed. Given `traffic` without `durations`, only the ranker is asked. Each /predict carries
        the request's city: `traffic["city"]` when the frame has it, else (settings.cities) drawn by
        serving.data.draw_cities with the phase's seed; none when neither.
        """
        stop = stop or threading.Event()
        if traffic is None:
            from serving.data import generate_duration_traffic, generate_traffic  # heavy (pandas)
            seed = self.settings.seed + len(self.phases)
            traffic = generate_traffic(variant, n_requests, seed)
            if self.settings.duration and durations is None:
                durations = generate_duration_traffic(variant, n_requests, seed)
        cities = traffic.get("city") if hasattr(traffic, "get") else None
        if cities is None and self.settings.cities:
            from serving.data import draw_cities
            cities = draw_cities(n_requests, self.settings.seed + len(self.phases))
        cities = list(cities) if cities is not None else []
        duration_rows = list(zip(durations["driver_id"], durations["duration_minutes"])) if durations is not None \
            else []
        counts = PhaseCounts(phase, variant, n_requests, started_at=time.time())
        self.phases.append(counts)
        log.info("phase %s: %d %s requests at %.1f/s", phase, n_requests, variant, self.settings.rate)
        start = time.monotonic()
        futures = []
        rows = zip(traffic["driver_ids"], traffic["outcomes"])
        for i, (driver_ids, outcomes) in enumerate(rows):
            if i >= n_requests:
                break
            due = start + i / self.settings.rate
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            self._in_flight.acquire()
            duration = duration_rows[i] if i < len(duration_rows) else None
            city = cities[i] if i < len(cities) else None
            futures.append(self._pool.submit(self._request, counts, list(map(int, driver_ids)),
                                             list(map(int, outcomes)), duration, city))
        for future in futures:
            future.result()
        counts.finished_at = time.time()
        return counts

    def wait_for_feedback(self, timeout: float) -> bool:
        """Wait until every scheduled feedback was answered; False on timeout."""
        with self._outstanding_cond:
            return self._outstanding_cond.wait_for(lambda: self._outstanding == 0, timeout)

    def pending_feedback(self) -> int:
        with self._outstanding_cond:
            return self._outstanding

    def close(self) -> None:
        self._feedback.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _request(self, counts: PhaseCounts, driver_ids: list[int], outcomes: list[int],
                 duration: tuple[int, float] | None, city: str | None = None) -> None:
        """One request of the phase: the ranker, then (if given) trip_duration; one in-flight slot."""
        try:
            ok = self._predict(counts, driver_ids, outcomes, city)
            if duration is not None:
                ok = self._predict_duration(counts, int(duration[0]), float(duration[1])) and ok
            counts.add(sent=1, ok=int(ok), errors=int(not ok))
        finally:
            self._in_flight.release()

    def _schedule_feedback(self, counts: PhaseCounts, model: str, path: str, body: dict[str, Any]) -> None:
        with self._outstanding_cond:
            self._outstanding += 1
        self._feedback.call_later(self.settings.feedback_delay,
                                  lambda: self._pool.submit(self._send_feedback, counts, model, path, body))

    def _predict(self, counts: PhaseCounts, driver_ids: list[int], outcomes: list[int],
                 city: str | None = None) -> bool:
        request_id = uuid.uuid4().hex
        request: dict[str, Any] = {"request_id": request_id, "driver_ids": driver_ids}
        if city is not None:
            request["city"] = str(city)
        status, body = self._post(f"{self.settings.base_url}/predict", request, self.settings.timeout)
        chosen = body.get("best_driver_id") if isinstance(body, dict) else None
        outcome = feedback_outcome(driver_ids, outcomes, chosen) if status == 200 else None
        if outcome is None:
            counts.add(MODEL_NAME, sent=1, errors=1)
            counts.last_error = f"/predict answered {status}: {str(body)[:200]}"
            return False
        counts.add(MODEL_NAME, sent=1, ok=1)
        self._schedule_feedback(counts, MODEL_NAME, "/feedback", {"request_id": body.get("request_id", request_id),
                                                                  "trip_completed": outcome})
        return True

    def _predict_duration(self, counts: PhaseCounts, driver_id: int, minutes: float) -> bool:
        request_id = uuid.uuid4().hex
        status, body = self._post(f"{self.settings.base_url}/predict/duration",
                                  {"request_id": request_id, "driver_id": driver_id}, self.settings.timeout)
        if status != 200 or not isinstance(body, dict):
            counts.add(DURATION_MODEL_NAME, sent=1, errors=1)
            counts.last_error = f"/predict/duration answered {status}: {str(body)[:200]}"
            return False
        counts.add(DURATION_MODEL_NAME, sent=1, ok=1)
        self._schedule_feedback(counts, DURATION_MODEL_NAME, "/feedback/duration",
                                {"request_id": body.get("request_id", request_id), "duration_minutes": minutes})
        return True

    def _send_feedback(self, counts: PhaseCounts, model: str, path: str, feedback: dict[str, Any]) -> None:
        """POST one late label of `model`."""
        try:
            status, body = self._post(f"{self.settings.base_url}{path}", feedback, self.settings.timeout)
            if 200 <= status < 300:
                counts.add(model, feedback_sent=1, feedback_ok=1)
            else:
                counts.add(model, feedback_sent=1, feedback_errors=1)
                counts.last_error = f"{path} answered {status}: {str(body)[:200]}"
        finally:
            with self._outstanding_cond:
                self._outstanding -= 1
                self._outstanding_cond.notify_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.traffic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        defaults = TrafficSettings.from_env()
    except SettingsError as exc:
        parser.error(str(exc))
    parser.add_argument("--url", default=defaults.base_url, help="serving base URL (%(default)s)")
    parser.add_argument("--normal", type=int, default=defaults.normal_requests, help="normal-phase requests")
    parser.add_argument("--drift", type=int, default=defaults.drift_requests, help="drift-phase requests")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests per second")
    parser.add_argument("--feedback-delay", type=float, default=defaults.feedback_delay)
    parser.add_argument("--no-cities", dest="cities", action="store_false", default=defaults.cities,
                        help="send no city with /predict (its events then carry no context.city)")
    parser.add_argument("--no-duration", dest="duration", action="store_false", default=defaults.duration,
                        help="do not ask the second model (/predict/duration)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = TrafficSettings(base_url=args.url.rstrip("/"), rate=args.rate, normal_requests=args.normal,
                               drift_requests=args.drift, feedback_delay=args.feedback_delay,
                               concurrency=defaults.concurrency, timeout=defaults.timeout, seed=defaults.seed,
                               duration=args.duration, cities=args.cities)
    generator = TrafficGenerator(settings)
    try:
        for name, n in (("normal", settings.normal_requests), ("drift", settings.drift_requests)):
            counts = generator.run_phase(name, name, n)
            print(json.dumps(counts.snapshot()), flush=True)
        generator.wait_for_feedback(settings.feedback_delay + 30)
        for counts in generator.phases:
            print(json.dumps(counts.snapshot()), flush=True)
    except KeyboardInterrupt:
        return 130
    finally:
        generator.close()
    return 0 if all(c.errors == 0 and all(m.feedback_errors == 0 for m in c.models.values())
                    for c in generator.phases) else 1


if __name__ == "__main__":
    sys.exit(main())

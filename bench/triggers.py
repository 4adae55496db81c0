"""Deferrable mode at scale: N exports waited on by N ExportImagesTriggers in one event loop.

Starts the emulator CLI in its own process (documented rate limits on: ExportImages 20/s,
DescribeImages 40/s), starts N real exports (one image each, at the ExportImages limit), then runs
N triggers concurrently as a triggerer would and reports what the shared pollers cost.
Targets: all complete, 0 throttled, DescribeImages calls per poll cycle <= ceil(N/100), longest
event-loop stall < 100 ms, at most 15 KB of memory per waiting export.
With --credential-lifetime S the connection assumes a role through the emulator's STS (credentials
living S seconds): target <= 2 AssumeRole calls per lifetime for the whole process, none refused.
Usage: python bench/triggers.py [--quick] [--n N] [--poll-interval S] [--credential-lifetime S] [--restart]
(the issue's figure: --n 5000)

``--restart``: a triggerer restarted with N deferred waits (exports that keep running): all N
triggers are created at once, as the new triggerer's TriggerRunner does, and the bench reports how
long until every wait has been checked again and how many DescribeImages calls that took (default
N 1000, the default triggerer capacity, and the trigger's default poll interval, 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import subprocess
import sys
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psutil

from airflow_cvm_export.emulator.catalog import REGION, WRITABLE_BUCKETS, extra_image_id
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.triggers.cvm import DEFAULT_POLL_INTERVAL, ExportImagesTrigger
from airflow_cvm_export.triggers.poller import ExportPoller
from airflow_cvm_export.utils.connection import DEFAULT_RATE_LIMITS

SECRET_ID, SECRET_KEY = "AKIDBENCHTRIGGERS", "bench-secret-key"
CONN_ID = "tc_bench"
ROLE_ARN = "qcs::cam::uin/100000000001:roleName/AirflowCvmExport"  # a role the emulator's STS knows
BUCKET = WRITABLE_BUCKETS[0]
STALL_TICK = 0.005
KB = 1024
TASK_RUNNER_PROBE = textwrap.dedent(
    """
    import psutil
    import airflow.sdk  # noqa: F401
    import airflow_cvm_export.hooks.cvm  # noqa: F401
    import requests  # noqa: F401
    print(psutil.Process().memory_info().rss)
    """
)


class Recorder:
    """Counts what the pollers send (by wrapping the async hook and the poller) and watches the event loop."""

    def __init__(self) -> None:
        self.sends: list[tuple[str, float]] = []
        self.cycles: list[int] = []  # DescribeImages calls of each cycle
        self.stall = 0.0
        self.peak_rss = 0
        self.gc_pause = 0.0
        self._gc_started = 0.0

    def install(self) -> None:
        send, call, check = CvmAsyncHook._send, CvmAsyncHook.call, ExportPoller._check

        async def recorded_send(hook: CvmAsyncHook, request: Any, *, action: str, **kwargs: Any) -> Any:
            self.sends.append((action, time.monotonic()))
            return await send(hook, request, action=action, **kwargs)

        async def recorded_call(hook: CvmAsyncHook, action: str, params: dict[str, Any]) -> Any:
            if action == "DescribeImages":
                self.cycles[-1] += 1
            return await call(hook, action, params)

        async def recorded_check(poller: ExportPoller, batch: list[Any]) -> None:
            self.cycles.append(0)
            await check(poller, batch)

        CvmAsyncHook._send = recorded_send  # type: ignore[method-assign]
        CvmAsyncHook.call = recorded_call  # type: ignore[method-assign]
        ExportPoller._check = recorded_check  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pause = max(self.gc_pause, time.perf_counter() - self._gc_started)

    async def watch(self) -> None:
        """Sample the loop's lateness and this process' RSS until cancelled."""
        loop, proc = asyncio.get_running_loop(), psutil.Process()
        while True:
            before = loop.time()
            await asyncio.sleep(STALL_TICK)
            self.stall = max(self.stall, loop.time() - before - STALL_TICK)
            self.peak_rss = max(self.peak_rss, proc.memory_info().rss)

    def peak_rate(self, action: str) -> int:
        """Most calls of ``action`` sent within any one-second window."""
        times = [at for name, at in self.sends if name == action]
        start, peak = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            peak = max(peak, end - start + 1)
        return peak


def start_emulator(n: int, export_seconds: float, credential_lifetime: float | None) -> tuple[subprocess.Popen, str]:
    lifetime = [] if credential_lifetime is None else ["--credential-lifetime", str(credential_lifetime)]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_cvm_export.emulator",
            *lifetime,
            "--port",
            "0",
            "--secret-id",
            SECRET_ID,
            "--secret-key",
            SECRET_KEY,
            "--export-seconds",
            str(export_seconds),
            "--extra-images",
            str(n),
            "--max-running-exports",
            str(n),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, server.stdout.readline().strip()


def emulator_requests(url: str) -> dict[str, dict[str, int]]:
    with CvmHook(CONN_ID).session.get(f"{url}/_emulator/state", timeout=10) as answer:
        return answer.json()["requests"]


def start_exports(n: int) -> list[dict[str, Any]]:
    """Start n one-image exports (at the ExportImages rate limit) and return their export records."""
    hook = CvmHook(CONN_ID)

    def start(index: int) -> dict[str, Any]:
        image_id = extra_image_id(index)
        started_at = datetime.now(UTC).isoformat()
        response = hook.export_images(image_ids=[image_id], bucket_name=BUCKET)
        return {
            "task_id": response["TaskId"],
            "cos_paths": response["CosPaths"],
            "image_ids": [image_id],
            "bucket_name": BUCKET,
            "region": REGION,
            "file_name_prefixes": None,
            "export_format": "RAW",
            "request_id": response["RequestId"],
            "started_at": started_at,
        }

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(start, range(1, n + 1)))


async def wait_all(exports: list[dict[str, Any]], poll_interval: float, recorder: Recorder) -> dict[str, Any]:
    """Run one trigger per export in this loop; return events and memory figures."""
    proc = psutil.Process()
    watcher = asyncio.create_task(recorder.watch())
    triggers = [
        ExportImagesTrigger(export=e, tencentcloud_conn_id=CONN_ID, poll_interval=poll_interval) for e in exports
    ]

    async def first_event(trigger: ExportImagesTrigger) -> dict[str, Any]:
        async for event in trigger.run():
            await trigger.cleanup()
            return event.payload
        raise RuntimeError("the trigger ended without an event")

    async def cycles(count: int) -> None:
        while len(recorder.cycles) < count:
            await asyncio.sleep(poll_interval / 10)

    started = time.monotonic()
    tasks = [asyncio.create_task(first_event(triggers[0]))]
    await cycles(1)  # the poller, its HTTP client and lazy imports exist: not a per-export cost
    rss_before = proc.memory_info().rss
    for trigger in triggers[1:]:  # as Airflow's TriggerRunner.create_triggers: one a turn of the loop
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(first_event(trigger)))
    await cycles(3)  # the others joined the second cycle; measure while the third runs
    rss_waiting = proc.memory_info().rss
    waiting = sum(not task.done() for task in tasks) - 1
    events = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    watcher.cancel()
    return {
        "events": events,
        "elapsed": elapsed,
        "waiting": waiting,
        "per_export": (rss_waiting - rss_before) / max(waiting, 1),
    }


async def restart(exports: list[dict[str, Any]], poll_interval: float, recorder: Recorder) -> dict[str, float]:
    """Create one trigger per export at once (a triggerer starting with N waits); time until each is checked."""
    triggers = [
        ExportImagesTrigger(export=e, tencentcloud_conn_id=CONN_ID, poll_interval=poll_interval) for e in exports
    ]

    async def wait(trigger: ExportImagesTrigger) -> None:
        async for _ in trigger.run():
            raise RuntimeError("an export ended during the restart bench")

    watcher = asyncio.create_task(recorder.watch())
    started = time.monotonic()
    tasks = []
    for trigger in triggers:  # as TriggerRunner.create_triggers: one a turn of the loop
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(wait(trigger)))
    created = time.monotonic() - started
    while not all(t._waiter is not None and t._waiter.progress is not None for t in triggers):
        await asyncio.sleep(0.05)
    checked = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    watcher.cancel()
    return {"created": created, "checked": checked, "describe_calls": sum(recorder.cycles)}


def task_runner_rss() -> int:
    """RSS of a fresh interpreter holding what a poking sensor's task process imports (a lower bound)."""
    out = subprocess.run([sys.executable, "-c", TASK_RUNNER_PROBE], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def credential_report(lifetime: float, seconds: float, requests: dict[str, dict[str, int]]) -> bool:
    """AssumeRole calls per credential lifetime over the whole run (exports started and waited for)."""
    assumed = sum(requests.get("AssumeRole", {}).values())
    refused = sum(outcomes.get("AuthFailure.TokenFailure", 0) for outcomes in requests.values())
    per_lifetime = assumed / (seconds / lifetime)
    print(
        f"credentials: lifetime {lifetime:g} s, {assumed} AssumeRole calls in {seconds:.0f} s = "
        f"{per_lifetime:.2f} per lifetime (target <= 2), {refused} requests refused for an expired token"
    )
    return per_lifetime <= 2 and refused == 0


def report(
    n: int, poll_interval: float, result: dict[str, Any], recorder: Recorder, calls: dict[str, dict[str, int]]
) -> bool:
    statuses = Counter(event["status"] for event in result["events"])
    by_action = {action: sum(outcomes.values()) for action, outcomes in sorted(calls.items())}
    throttled = sum(
        count
        for outcomes in calls.values()
        for outcome, count in outcomes.items()
        if "RequestLimitExceeded" in outcome or "SlowDown" in outcome
    )
    describe_cap = math.ceil(n / 100)
    worst_cycle = max(recorder.cycles, default=0)
    describe_rate = recorder.peak_rate("DescribeImages")
    per_export_kb = result["per_export"] / KB
    runner_mb = task_runner_rss() / KB / KB
    poke_rate = n / poll_interval
    print(f"N={n} waits, poll_interval={poll_interval:g}s, one event loop, emulator in its own process")
    print(f"completions: {dict(statuses)} in {result['elapsed']:.1f}s ({result['waiting']} waiting at once)")
    print("API calls while waiting: " + ", ".join(f"{a} {c}" for a, c in by_action.items()))
    print("calls per export: " + ", ".join(f"{a} {c / n:.2f}" for a, c in by_action.items()))
    print(
        f"poll cycles: {len(recorder.cycles)}; DescribeImages calls per cycle: max {worst_cycle} "
        f"(target <= {describe_cap})"
    )
    print(
        f"peak API rate (1-s window): DescribeImages {describe_rate}/s "
        f"(limit {DEFAULT_RATE_LIMITS['DescribeImages']:g}/s), COS HEAD {recorder.peak_rate('COS HEAD')}/s"
    )
    print(f"throttled responses: {throttled}")
    print(
        f"peak RSS: {recorder.peak_rss / KB / KB:.0f} MB (process max "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB:.0f} MB)"
    )
    print(
        f"longest event-loop stall: {recorder.stall * 1000:.1f} ms (target < 100 ms); longest GC pause "
        f"{recorder.gc_pause * 1000:.1f} ms (the imported heap frozen first; a full GC of it unfrozen is ~70 ms)"
    )
    print(f"memory per waiting export: {per_export_kb:.1f} KB (target <= 15 KB)")
    limit = "over" if poke_rate > DEFAULT_RATE_LIMITS["DescribeImages"] else "within"
    print(
        f"poke-mode estimate for the same N: {n} worker slots held for the whole wait, >= "
        f"{n * runner_mb / KB:.1f} GB ({runner_mb:.0f} MB per task process, measured lower bound); "
        f"{poke_rate:.0f} DescribeImages/s at the same interval ({limit} the 40/s limit)"
    )
    return (
        statuses["success"] == n
        and throttled == 0
        and worst_cycle <= describe_cap
        and recorder.stall < 0.1
        and per_export_kb <= 15
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="concurrent waits (default 1000, 200 with --quick)")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds (default 5, 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smaller run for CI")
    parser.add_argument("--restart", action="store_true", help="a triggerer restarted with N waits (see above)")
    parser.add_argument(
        "--credential-lifetime", type=float, default=None, help="assume a role whose credentials live S seconds"
    )
    args = parser.parse_args()
    n = args.n or (200 if args.quick else 1000)
    default_interval = DEFAULT_POLL_INTERVAL if args.restart else 2.0 if args.quick else 5.0
    poll_interval = args.poll_interval or default_interval
    start_seconds = n * 1.05 / DEFAULT_RATE_LIMITS["ExportImages"]
    export_seconds = start_seconds + 4 * poll_interval  # the first exports finish a few cycles into the wait
    if args.restart:
        export_seconds = 24 * 3600.0  # the exports outlive the bench
    server, url = start_emulator(n, export_seconds, args.credential_lifetime)
    began = time.monotonic()
    try:
        extra = {"endpoint": url, "region": REGION}
        if args.credential_lifetime is not None:
            extra.update(role_arn=ROLE_ARN, sts_endpoint=url)
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY, "extra": extra}
        )
        # As Airflow's dag-processor and LocalExecutor do: GC then skips the imported heap (Airflow's, which
        # this provider does not control). Everything the exports and the waits allocate stays collectable.
        gc.freeze()
        print(f"starting {n} exports at the ExportImages limit (~{start_seconds:.0f}s)...", flush=True)
        exports = start_exports(n)
        before = emulator_requests(url)
        recorder = Recorder()
        recorder.install()
        if args.restart:
            figures = asyncio.run(restart(exports, poll_interval, recorder))
            describe_cap = math.ceil(n / 100)
            print(
                f"triggerer restart with N={n} waits, poll_interval={poll_interval:g}s: triggers created in "
                f"{figures['created']:.2f}s; every wait checked again {figures['checked']:.1f}s after the restart "
                f"(its first check is due one poll_interval after it starts); DescribeImages calls: "
                f"{figures['describe_calls']:g} (ceil(N/100) = {describe_cap}); longest event-loop stall "
                f"{recorder.stall * 1000:.1f} ms"
            )
            ok = figures["describe_calls"] <= describe_cap and figures["checked"] < poll_interval + 30
        else:
            result = asyncio.run(wait_all(exports, poll_interval, recorder))
            after = emulator_requests(url)
            calls = {
                action: {o: c - before.get(action, {}).get(o, 0) for o, c in outcomes.items()}
                for action, outcomes in after.items()
                if action != "ExportImages"
            }
            ok = report(n, poll_interval, result, recorder, calls)
            if args.credential_lifetime is not None:
                ok = credential_report(args.credential_lifetime, time.monotonic() - began, after) and ok
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

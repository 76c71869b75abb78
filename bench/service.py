"""The service under load: 50 API clients polling while two exports run; how long a page takes.

    .venv/bin/python bench/service.py                 # scale 5, 3 rounds of 10 s
    .venv/bin/python bench/service.py --scale 10 --rounds 5 --seconds 20

Builds the demo database in SQLite at ``--scale`` in a temporary folder, configures a service
on it (tests/_service.py: an admin, a token, a local destination) and runs ``sqlsnap serve``
as a child process. Each round measures, in the same run:

- **idle**: the history page (``GET /history`` with a logged-in session) fetched every 50 ms
  for ``--seconds``, nothing else running: the reference;
- **loaded**: the same page while ``--clients`` API clients poll ``GET /api/exports/{id}`` and
  ``GET /api/exports`` without pause and two exports run at all times (a new one starts as
  soon as one ends).

Prints per round the page's median and 95th percentile in both, their ratio, the API calls
answered and their median, and any error (a non-2xx answer or a failed request). The goal
(issue 16): no error, and the page's median under load below 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._service import ADMIN, PASSWORD, build_demo, free_port, make_env  # noqa: E402

SQLSNAP = str(Path(sys.executable).with_name("sqlsnap"))


async def log_in(client: Any) -> None:
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "no CSRF token on the login page"
    r = await client.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf": csrf[1], "next": "/"})
    assert r.status_code == 303, r.text


async def probe_page(client: Any, until: float, times: list[float], errors: list[str]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            r = await client.get("/history")
            if r.status_code != 200:
                errors.append(f"page {r.status_code}")
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            errors.append(f"page {type(exc).__name__}")
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)


async def poller(client: Any, headers: dict[str, str], job_ids: list[int], until: float, times: list[float],
                 errors: list[str]) -> None:
    n = 0
    while time.monotonic() < until:
        path = f"/api/exports/{job_ids[-1]}" if n % 2 else "/api/exports?limit=20"
        n += 1
        started = time.perf_counter()
        try:
            r = await client.get(path, headers=headers)
            if r.status_code != 200:
                errors.append(f"api {r.status_code}")
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            errors.append(f"api {type(exc).__name__}")
        times.append(time.perf_counter() - started)


async def exporter(client: Any, headers: dict[str, str], job_ids: list[int], until: float,
                   outcomes: list[str]) -> None:
    """Keep one export running until ``until``: start one, wait for it, start the next."""
    while time.monotonic() < until:
        body = {"source": "demo", "destination": "local"}
        r = await client.post("/api/exports", json=body, headers=headers)
        job_id = r.json()["id"]
        job_ids.append(job_id)
        while True:
            status = (await client.get(f"/api/exports/{job_id}", headers=headers)).json()["status"]
            if status not in ("queued", "running"):
                outcomes.append(status)
                break
            await asyncio.sleep(0.2)


async def round_(base: str, token: str, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client, \
            httpx.AsyncClient(base_url=base, timeout=60) as browser:
        await log_in(browser)
        idle: list[float] = []
        errors: list[str] = []
        await probe_page(browser, time.monotonic() + seconds, idle, errors)
        loaded: list[float] = []
        api: list[float] = []
        job_ids: list[int] = []
        outcomes: list[str] = []
        until = time.monotonic() + seconds
        exporters = [asyncio.create_task(exporter(client, headers, job_ids, until, outcomes))
                     for _ in range(2)]
        while not job_ids:
            await asyncio.sleep(0.01)
        await asyncio.gather(probe_page(browser, until, loaded, errors),
                             *(poller(client, headers, job_ids, until, api, errors) for _ in range(clients)),
                             *exporters)
    return {"idle": idle, "loaded": loaded, "api": api, "errors": errors, "exports": outcomes}


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def p95(values: list[float]) -> str:
    return f"{sorted(values)[int(len(values) * 0.95)] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--export-nice", type=int, help="[server] export_nice (default: the service's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "svc").mkdir()
        started = time.monotonic()
        env = make_env(root / "svc", build_demo(root / "demo.db", args.scale))
        env.state.close()
        if args.export_nice is not None:
            text = env.config_path.read_text()
            env.config_path.write_text(f"[server]\nexport_nice = {args.export_nice}\n" + text)
        print(f"demo at scale {args.scale} built in {time.monotonic() - started:.1f} s; "
              f"load average {os.getloadavg()[0]:.2f}")
        port = free_port()
        server = subprocess.Popen([SQLSNAP, "serve", "-c", str(env.config_path), "--port", str(port)],
                                  stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(base)
            medians = []
            for n in range(1, args.rounds + 1):
                r = asyncio.run(round_(base, env.tokens["admin"], args.clients, args.seconds))
                medians.append(statistics.median(r["loaded"]))
                done = {s: r["exports"].count(s) for s in sorted(set(r["exports"]))}
                print(f"round {n}: page idle median {ms(r['idle'])} ms (p95 {p95(r['idle'])}), under load "
                      f"median {ms(r['loaded'])} ms (p95 {p95(r['loaded'])}), ratio "
                      f"{statistics.median(r['loaded']) / statistics.median(r['idle']):.2f}; "
                      f"{len(r['api'])} API calls from {args.clients} clients, median {ms(r['api'])} ms; "
                      f"exports {done}; errors {len(r['errors'])} {sorted(set(r['errors']))}; "
                      f"load average {os.getloadavg()[0]:.2f}")
            print(f"page median under load, median of {args.rounds} rounds: "
                  f"{statistics.median(medians) * 1000:.1f} ms (goal: < 200 ms)")
        finally:
            server.terminate()
            server.wait(30)


def _wait_up(base: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/login", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit("the service did not start") from None
            time.sleep(0.1)


if __name__ == "__main__":
    main()

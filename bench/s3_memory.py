#!/usr/bin/env python3
"""Peak memory of ``sqlsnap export`` to S3 against the same export to a local file.

Run from the repository root with sqlsnap's virtualenv (needs boto3 and moto[server])::

    .venv/bin/python bench/s3_memory.py                  # scales 2 and 10 of the demo database
    .venv/bin/python bench/s3_memory.py --scales 10 --compress zstd --json s3_memory.json

For each scale it builds the bundled demo database in SQLite (once, in a temporary folder),
starts moto's S3 server in its own process (so its memory, which holds every uploaded
byte, is not counted), then runs, each as a child process and in turn ``--repeat`` times:

- ``sqlsnap export sqlite:///demo.db -o demo.json``               (the file reference)
- ``sqlsnap export sqlite:///demo.db -o s3://bench/demo.json --s3-endpoint ...``

and prints one line per scale: both peak RSS (median), their difference (what the S3 sink
costs), their ratio, and the size of the document; then the target line, PASS or FAIL:
the S3 export's peak minus the file export's peak stays constant across scales, within 10%
(largest minus smallest difference, over the smallest). Peak RSS comes from GNU time's
``%M`` when ``/usr/bin/time`` exists (``os.wait4``'s ``ru_maxrss`` also counts this
process's pre-exec memory; see bench/run.py), else from ``os.wait4``.

What to expect: the S3 sink holds at most ``PARTS_IN_FLIGHT + 1`` parts of ``PART_BYTES``
(3 x 8 MiB) plus boto3 itself (~25 MB of code and data, paid once), so the S3 peak is a
constant above the file peak, and does not grow with the database: compare the scales.
Exit code 0 always (FAIL included): this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The target: the S3 sink's cost (S3 peak minus file peak) varies by at most this fraction
#: across scales, i.e. it is a constant, not a share of the database.
CONSTANT_WITHIN = 0.10
RSS_WRAPPER = "/usr/bin/time"
SQLSNAP_MAIN = "from sqlsnap.cli import main; main(prog_name='sqlsnap')"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(args: list[str], env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process; raises if it fails."""
    rss_file = workdir / f"rss-{os.getpid()}.txt"
    wrapper = [RSS_WRAPPER, "-f", "%M", "-o", str(rss_file)] if os.access(RSS_WRAPPER, os.X_OK) else []
    started = time.monotonic()
    proc = subprocess.Popen([*wrapper, sys.executable, "-c", SQLSNAP_MAIN, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"sqlsnap {' '.join(args)} failed ({proc.returncode}): {err.decode()[-500:]}")
    peak_kib = usage.ru_maxrss
    if wrapper:
        peak_kib = int(rss_file.read_text().split()[-1])
        rss_file.unlink()
    return peak_kib / 1024, wall


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto's S3 server did not start (pip install 'moto[server]')")


def build(scale: int, folder: Path) -> Path:
    db = folder / f"demo-{scale}.db"
    if not db.exists():
        log(f"building the demo database at scale {scale} ...")
        subprocess.run([sys.executable, "-c", SQLSNAP_MAIN, "demo", "--target", f"sqlite:///{db}",
                        "--scale", str(scale), "--no-export", "-q"], check=True)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="2,10", help="demo scales to run (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each export (median reported)")
    parser.add_argument("--compress", choices=["none", "zstd", "gzip"], default="none",
                        help="compression of both exports (none is the worst case for part buffers)")
    parser.add_argument("--workdir", help="keep databases here between runs (default: a temp folder)")
    parser.add_argument("--json", dest="json_out", help="also write the measurements to this file")
    opts = parser.parse_args()

    import boto3  # noqa: F401 - fail early, with the real error, if the extra is missing

    scales = [int(s) for s in opts.scales.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="sqlsnap-s3mem-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(ROOT / "src")}
        moto = start_moto(port)
        results = []
        try:
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                region_name="us-east-1")
            client.create_bucket(Bucket="bench")
            suffix = {"none": "", "zstd": ".zst", "gzip": ".gz"}[opts.compress]
            for scale in scales:
                db = build(scale, work)
                file_runs, s3_runs = [], []
                size = 0
                for i in range(opts.repeat):
                    target = work / f"out-{scale}.json{suffix}"
                    file_runs.append(measure(["export", f"sqlite:///{db}", "-o", str(target), "-q",
                                              "--compress", opts.compress], env, work))
                    size = target.stat().st_size
                    target.unlink()
                    Path(f"{target}.sha256").unlink(missing_ok=True)
                    s3_runs.append(measure(["export", f"sqlite:///{db}", "-o", f"s3://bench/s{scale}-{i}.json{suffix}",
                                            "--s3-endpoint", endpoint, "-q", "--compress", opts.compress],
                                           env, work))
                    for key in (f"s{scale}-{i}.json{suffix}", f"s{scale}-{i}.json{suffix}.sha256"):
                        client.delete_object(Bucket="bench", Key=key)
                file_mb = statistics.median(r[0] for r in file_runs)
                s3_mb = statistics.median(r[0] for r in s3_runs)
                row = {"scale": scale, "document_mb": round(size / 1e6, 1), "compression": opts.compress,
                       "file_peak_mb": round(file_mb, 1), "s3_peak_mb": round(s3_mb, 1),
                       "s3_extra_mb": round(s3_mb - file_mb, 1), "ratio": round(s3_mb / file_mb, 2),
                       "file_seconds": round(statistics.median(r[1] for r in file_runs), 2),
                       "s3_seconds": round(statistics.median(r[1] for r in s3_runs), 2),
                       "file_runs_mb": [round(r[0], 1) for r in file_runs],
                       "s3_runs_mb": [round(r[0], 1) for r in s3_runs]}
                results.append(row)
                print(f"s3_memory scale={scale} document={row['document_mb']} MB ({opts.compress}): "
                      f"file {row['file_peak_mb']} MB, s3 {row['s3_peak_mb']} MB "
                      f"(+{row['s3_extra_mb']} MB), ratio {row['ratio']} "
                      f"(time {row['file_seconds']} s vs {row['s3_seconds']} s)", flush=True)
        finally:
            moto.kill()
            moto.wait()
        if len(results) > 1:
            growth = results[-1]["s3_peak_mb"] - results[0]["s3_peak_mb"]
            data = results[-1]["document_mb"] - results[0]["document_mb"]
            print(f"s3_memory growth: +{growth:.1f} MB of peak RSS for +{data:.1f} MB of document "
                  f"(file: +{results[-1]['file_peak_mb'] - results[0]['file_peak_mb']:.1f} MB)")
        print_target(results)
        if opts.json_out:
            Path(opts.json_out).write_text(json.dumps(results, indent=2) + "\n")


def print_target(results: list[dict[str, object]]) -> None:
    """Print whether the S3 sink's cost (S3 peak minus file peak) is the same at every scale."""
    extras = [float(r["s3_extra_mb"]) for r in results]  # type: ignore[arg-type]
    listed = ", ".join(f"{e:.1f} MB at scale {r['scale']}" for e, r in zip(extras, results))
    if len(extras) < 2 or min(extras) <= 0:
        print(f"s3_memory target: S3 peak - file peak = {listed}: needs two scales or more (n/a)")
        return
    spread = (max(extras) - min(extras)) / min(extras)
    verdict = "PASS" if spread <= CONSTANT_WITHIN else "FAIL"
    print(f"s3_memory target: S3 peak - file peak = {listed}; spread {spread:.0%} "
          f"(target <= {CONSTANT_WITHIN:.0%}): {verdict}")


if __name__ == "__main__":
    main()

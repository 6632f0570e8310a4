#!/usr/bin/python3
"""The scaling table of issue 17: samples/s of a job on this machine with 1, 2 and 4 workers
and 1 and 2 parameter servers (BSP, separate processes), and, from the bytes a step moves and
the compute a step takes, the step time to expect on 1, 10 and 25 Gbit/s links between hosts.

  bench/scaling.py [--job configs/jobs/fashion_mlp.toml] [--epochs 1] [--repeats 3]

Method:
  - Every layout runs the job (batch per worker as the job says) for --epochs, in
    alternating rounds (every layout once per round, the order rotated each round), and the
    table reports each layout's median samples/s and the spread of its runs: these machines
    drift up to 2x between runs, so only figures from the same rounds are compared.
  - Bytes per step: one run of 1 server + 2 workers with the data plane kept on sockets
    (--no-data-plane-shared-memory) and the server's Prometheus counters read at the end:
    custody_network_{received,sent}_bytes_total / (workers x steps). On one host the cluster
    moves blocks through shared memory; between hosts they cross the link, and these are
    the bytes that would.
  - Compute per step: custody-bench-math --ceiling (one thread, gradient and update of one
    batch, no sockets), seconds per batch.
The link model (docs/ARCHITECTURE.md, "Scaling across hosts") is printed with its inputs.
Writes build/bench/scaling.json.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare import BIN, OUT, ROOT, Cluster, run_json  # noqa: E402


def job_text(path, epochs, workers):
    lines = []
    for line in pathlib.Path(path).read_text().splitlines():
        key = line.split("=")[0].strip()
        if key == "epochs":
            line = f"epochs = {epochs}"
        elif key == "workers":
            line = f"workers = {workers}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def batch_size(path):
    for line in pathlib.Path(path).read_text().splitlines():
        if line.split("=")[0].strip() == "batch_size":
            return int(line.split("=")[1].split("#")[0])
    return 64


def train(work, job, epochs, servers, workers, coordinator_args=(), ps_metrics=False):
    """One job on a fresh local cluster: samples/s, and the first server's metrics text."""
    c = Cluster(work, servers, workers, store=False, coordinator_args=list(coordinator_args),
                ps_metrics=ps_metrics)
    try:
        path = c.dir / "job.toml"
        path.write_text(job_text(job, epochs, workers))
        job_id = c.cli("submit", str(path), "--as", "bench")
        while True:
            s = c.cli("status", job_id, "--json")
            if s["state"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        if s["state"] != "completed":
            raise RuntimeError(f"job {job_id} {s['state']}: {s['message']}")
        seconds = (s["finished_at_ms"] - s["started_at_ms"]) / 1000
        samples = s["total_steps"] * workers * batch_size(job)
        metrics = None
        if ps_metrics:
            addr = (c.dir / "ps-1.metrics").read_text().strip()
            metrics = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
        return {"samples_per_sec": samples / seconds, "seconds": seconds, "steps": s["total_steps"],
                "test_accuracy": s["test_accuracy"], "metrics": metrics}
    finally:
        c.stop()


def counter(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def link_model(bytes_in, bytes_out, compute_s, workers, servers, gbit):
    """Expected BSP step time when every node is on its own host, links of `gbit` Gbit/s,
    full duplex. Per step each worker pushes `bytes_in` and pulls `bytes_out` (its whole
    model's worth, split over the servers); each server receives workers x bytes_in / servers
    and sends workers x bytes_out / servers. The slowest link sets the communication time;
    no overlap of compute and communication (a worker pushes after its backward pass and
    waits for the pull), no latency or protocol overhead beyond the measured bytes."""
    bps = gbit * 1e9 / 8
    worker_link = max(bytes_in, bytes_out) / bps
    server_link = workers * max(bytes_in, bytes_out) / servers / bps
    return compute_s + max(worker_link, server_link)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job", default=str(ROOT / "configs/jobs/fashion_mlp.toml"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--servers", default="1,2")
    args = p.parse_args()
    layouts = [(s, w) for w in map(int, args.workers.split(",")) for s in map(int, args.servers.split(","))]
    work = pathlib.Path(tempfile.mkdtemp(prefix="custody-scaling-"))
    step = lambda what: print(f"[scaling] {what}", file=sys.stderr, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    runs = {layout: [] for layout in layouts}
    for r in range(args.repeats):
        order = layouts[r % len(layouts):] + layouts[:r % len(layouts)]
        for servers, workers in order:
            step(f"round {r + 1} of {args.repeats}: {servers} server(s), {workers} worker(s)")
            runs[(servers, workers)].append(train(work, args.job, args.epochs, servers, workers))
    step("bytes per step: 1 server + 2 workers, blocks on sockets")
    wire = train(work, args.job, args.epochs, 1, 2, ["--no-data-plane-shared-memory"], ps_metrics=True)
    received = counter(wire["metrics"], "custody_network_received_bytes_total")
    sent = counter(wire["metrics"], "custody_network_sent_bytes_total")
    bytes_in, bytes_out = received / (2 * wire["steps"]), sent / (2 * wire["steps"])
    step("compute per step: custody-bench-math --ceiling")
    math = run_json([BIN / "custody-bench-math", "--ceiling", "2", args.job])
    compute_s = math["batch"] / math["custody_samples_per_sec"]
    batch = batch_size(args.job)

    table = []
    print(f"\nScaling of {pathlib.Path(args.job).name} on this machine ({os.cpu_count()} cores), "
          f"{args.epochs} epoch(s), medians of {args.repeats} alternating rounds:")
    print(f"{'servers':>7} {'workers':>7} {'samples/s':>10} {'spread':>17} {'vs 1x1':>7}")
    base = statistics.median(r["samples_per_sec"] for r in runs[layouts[0]])
    for servers, workers in layouts:
        rates = [r["samples_per_sec"] for r in runs[(servers, workers)]]
        m = statistics.median(rates)
        row = {"servers": servers, "workers": workers, "samples_per_sec": m,
               "runs": [round(x) for x in rates], "ratio_vs_first": m / base}
        for gbit in (1, 10, 25):
            t = link_model(bytes_in, bytes_out, compute_s, workers, servers, gbit)
            row[f"model_{gbit}gbit_step_ms"] = t * 1000
            row[f"model_{gbit}gbit_samples_per_sec"] = workers * batch / t
        table.append(row)
        print(f"{servers:>7} {workers:>7} {m:>10.0f} {min(rates):>8.0f}-{max(rates):<8.0f} {m / base:>7.2f}")
    print(f"\nMeasured: {bytes_in / 1e6:.3f} MB pushed and {bytes_out / 1e6:.3f} MB pulled per worker and step "
          f"(server's socket counters, {wire['steps']} steps x 2 workers); compute {compute_s * 1000:.3f} ms "
          f"per batch of {math['batch']} on one thread.")
    print("Expected across hosts (one node a host, full-duplex links, no overlap; step ms / samples/s):")
    print(f"{'servers':>7} {'workers':>7} " + " ".join(f"{str(g) + ' Gbit/s':>20}" for g in (1, 10, 25)))
    for row in table:
        cells = " ".join(f"{row[f'model_{g}gbit_step_ms']:>8.2f} / {row[f'model_{g}gbit_samples_per_sec']:>9.0f}"
                         for g in (1, 10, 25))
        print(f"{row['servers']:>7} {row['workers']:>7} {cells}")
    result = {"job": args.job, "epochs": args.epochs, "repeats": args.repeats, "cpus": os.cpu_count(),
              "bytes_pushed_per_worker_step": bytes_in, "bytes_pulled_per_worker_step": bytes_out,
              "compute_seconds_per_step": compute_s, "math": math, "table": table}
    out = OUT / f"scaling-{pathlib.Path(args.job).stem}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()

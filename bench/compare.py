#!/usr/bin/python3
"""Custody against PyTorch and against the machine's limits, in one run on the same data
and model (Fashion-MNIST, MLP 784-256-128-10, batch 64, momentum 0.9, cosine from 0.1).
Run through bench/compare.sh, which builds and installs what it needs.

Measures, in this order:
  - Custody's math path in one process vs the plain Eigen products of a step (ceiling);
  - push/pull of 1 MiB blocks through Custody's transport vs raw ZeroMQ on loopback;
  - the Custody local cluster (separate processes: coordinator, 1 or 2 parameter
    servers, 2 workers; BSP and ASP): samples/s and time to the target test accuracy;
  - the 1-server BSP cluster with the server inside worker-1's process (custody-worker
    --with-ps: that worker's pushes and replies do not cross the kernel);
  - the 1-server BSP cluster without the custody store (lineage recording off); then,
    for the recording cost, alternating short runs with the store on and off (medians),
    and recording one checkpoint against training one epoch in one process;
  - PyTorch single process (2 threads) and PyTorch DDP (gloo, 2 processes).
With --cnn (after the above) or --cnn-only (instead): the seeds' CNN
(configs/jobs/fashion_cnn.toml, --cnn-epochs, default 6) through the 1-server + 2-worker
BSP cluster, PyTorch single process (2 threads) and PyTorch DDP (bench/torch_cnn.py), in
alternating rounds, every peer flushing denormals; time to --cnn-target (0.91).
Prints a table with ratios and writes every figure to build/bench/compare.json.

Time to target: wall time from the job's start (the coordinator's started_at) until a
status poll (every 0.1 s) first shows a test accuracy at or above the target; PyTorch's
is its training time until the epoch whose evaluation first reaches it (evaluation time
excluded, which favours PyTorch slightly).
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / os.environ.get("CUSTODY_BUILD_DIR", "build") / "bin"
OUT = ROOT / os.environ.get("CUSTODY_BUILD_DIR", "build") / "bench"


def job_file(work, epochs, consistency):
    text = (ROOT / "configs/jobs/fashion_mlp.toml").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("epochs ="):
            line = f"epochs = {epochs}"
        if line.startswith("consistency ="):
            line = f'consistency = "{consistency}"'
        # ASP applies each worker's gradient on its own, where BSP applies their mean, and
        # with momentum 0.9 each applies to values up to a step stale: at 0.1 ASP diverges
        # with 2 workers, and at 0.05 it diverged in one run of four here.
        if consistency == "asp" and line.startswith("learning_rate ="):
            line = "learning_rate = 0.025"

        lines.append(line)
    path = work / f"job-{consistency}-{epochs}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Cluster:
    """A local cluster of separate processes, as scripts/lib/cluster.sh starts it; with
    colocated, the servers run inside the first workers' processes (--with-ps)."""

    def __init__(self, work, servers, workers, store, colocated=False, coordinator_args=(), ps_metrics=False):
        self.dir = pathlib.Path(tempfile.mkdtemp(dir=work))
        self.procs = []
        args = [str(BIN / "custody-coordinator"), "--config", str(ROOT / "configs/coordinator.toml"),
                "--listen", "tcp://127.0.0.1:0", "--port-file", str(self.dir / "addr"),
                *(["--store", str(self.dir / "store")] if store else ["--no-store"]), *coordinator_args]
        self._start(args, "coordinator")
        deadline = time.time() + 10
        while not (self.dir / "addr").exists() and time.time() < deadline:
            time.sleep(0.05)
        self.addr = (self.dir / "addr").read_text().strip()
        standalone_servers = 0 if colocated else servers
        for i in range(1, standalone_servers + 1):
            # With ps_metrics, each server's Prometheus endpoint, its address in ps-N.metrics.
            metrics = (["--metrics-listen", "127.0.0.1:0", "--metrics-port-file", str(self.dir / f"ps-{i}.metrics")]
                       if ps_metrics else [])
            self._start([str(BIN / "custody-ps"), "--config", str(ROOT / "configs/ps.toml"),
                         "--coordinator", self.addr, "--name", f"ps-{i}"] + metrics, f"ps-{i}")
        for i in range(1, workers + 1):
            with_ps = ["--with-ps", f"ps-{i}"] if colocated and i <= servers else []
            self._start([str(BIN / "custody-worker"), "--config", str(ROOT / "configs/worker.toml"),
                         "--coordinator", self.addr, "--name", f"worker-{i}"] + with_ps, f"worker-{i}")
        deadline = time.time() + 20
        while time.time() < deadline:
            nodes = self.cli("status", "--json").get("nodes", [])
            if sum(n["alive"] for n in nodes) == servers + workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not come up; see {self.dir}")

    def _start(self, args, name):
        log = open(self.dir / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def cli(self, *args):
        r = subprocess.run([str(BIN / "custody"), "--coordinator", self.addr, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"custody {' '.join(args)}: {r.stderr.strip()}")
        return json.loads(r.stdout) if "--json" in args else r.stdout.strip()

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def cnn_job_file(work, epochs):
    """configs/jobs/fashion_cnn.toml (the seeds' CNN, Adam 1e-3, cosine, batch 64, BSP) for
    `epochs` epochs."""
    text = (ROOT / "configs/jobs/fashion_cnn.toml").read_text()
    lines = [f"epochs = {epochs}" if line.startswith("epochs =") else line for line in text.splitlines()]
    path = work / f"job-cnn-{epochs}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cluster(work, servers, consistency, epochs, target, store=True, colocated=False, job_path=None, poll=0.1):
    """A job through a fresh local cluster (the MLP job unless job_path; batch 64 per worker
    either way); poll: seconds between status polls (each one a CLI process)."""
    c = Cluster(work, servers, 2, store, colocated)
    try:
        job = c.cli("submit", str(job_path or job_file(work, epochs, consistency)), "--as", "bench")
        reached = None
        while True:
            s = c.cli("status", job, "--json")
            if reached is None and s["test_accuracy"] is not None and s["test_accuracy"] >= target and s["started_at_ms"]:
                reached = time.time() * 1000 - s["started_at_ms"]
            if s["state"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(poll)
        if s["state"] != "completed":
            raise RuntimeError(f"job {job} {s['state']}: {s['message']}")
        seconds = (s["finished_at_ms"] - s["started_at_ms"]) / 1000
        samples = s["total_steps"] * 2 * 64
        return {"servers": servers, "workers": 2, "consistency": consistency, "epochs": epochs, "store": store,
                "colocated": colocated,
                "samples_per_sec": samples / seconds, "train_seconds": seconds,
                "time_to_target_s": None if reached is None else reached / 1000,
                "final_test_accuracy": s["test_accuracy"], "accuracy_history": s["accuracy_history"]}
    finally:
        c.stop()


def median_run(runs):
    """The run with the median samples/s (so its time to target and accuracy are one real
    run's), with every run's samples/s and their spread. With an even number of runs, the
    lower middle run, its samples/s replaced by the median (the mean of the middle two)."""
    ordered = sorted(runs, key=lambda r: r["samples_per_sec"])
    m = dict(ordered[(len(ordered) - 1) // 2])
    if len(ordered) % 2 == 0:
        m["samples_per_sec"] = statistics.median(r["samples_per_sec"] for r in ordered)
    m["samples_per_sec_runs"] = [round(r["samples_per_sec"]) for r in runs]
    m["spread"] = [round(ordered[0]["samples_per_sec"]), round(ordered[-1]["samples_per_sec"])]
    return m


def run_json(args, env=None):
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_env():
    # The machines here may set these, which hold OpenBLAS to older kernels: unset for the
    # PyTorch runs alone (never in tests or CI).
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def blas_in_use():
    try:
        return os.path.realpath("/etc/alternatives/libblas.so.3-x86_64-linux-gnu")
    except OSError:
        return "unknown"


def fmt_t(t):
    return "-" if t is None else f"{t:.1f} s"


def spread(x):
    return f"{x['spread'][0]:,}-{x['spread'][1]:,}" if "spread" in x else "1 run"


def print_table(head, rows):
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    line = lambda row: "  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i]) for i, v in enumerate(row))
    print(line(head))
    for row in rows:
        print(line(row))


def cnn_rows(work, args, step):
    """The seeds' CNN (configs/jobs/fashion_cnn.toml, args.cnn_epochs epochs): the cluster
    (1 ps + 2 workers, BSP), PyTorch in one process with 2 threads and PyTorch DDP (2
    processes, 1 thread each), all flushing denormals, in alternating rounds; the median
    run of each and its spread, and the ratios the targets of issue 17 name."""
    repeats = 1 if args.quick else args.repeats
    torch_args = ["/usr/bin/python3", ROOT / "bench/torch_cnn.py"]
    epochs, target = str(args.cnn_epochs), str(args.cnn_target)
    job = cnn_job_file(work, args.cnn_epochs)
    rounds = {"cluster_1ps_bsp": [], "torch_single": [], "torch_ddp": []}
    for i in range(repeats):
        step(f"CNN round {i + 1} of {repeats}: cluster 1 ps + 2 workers BSP, PyTorch 1 process (2 threads), "
             f"PyTorch DDP ({epochs} epochs each)")
        # Status polls every 0.5 s: each is a CLI process, and a CNN epoch takes tens of seconds.
        rounds["cluster_1ps_bsp"].append(run_cluster(work, 1, "bsp", args.cnn_epochs, args.cnn_target, job_path=job,
                                                     poll=0.5))
        rounds["torch_single"].append(run_json(
            torch_args + ["single", "--epochs", epochs, "--threads", "2", "--target", target], env=torch_env()))
        rounds["torch_ddp"].append(run_json(torch_args + ["ddp", "--epochs", epochs, "--target", target],
                                            env=torch_env()))
        # Every finished round on disk: a long run cut short still leaves its figures.
        (OUT / "compare_cnn_rounds.json").write_text(json.dumps(rounds, indent=2) + "\n")
    return summarize_cnn(rounds, args.cnn_epochs, args.cnn_target)


def summarize_cnn(rounds, epochs, target):
    """The CNN rounds' medians and ratios (also to re-read a build/bench/compare_cnn_rounds.json)."""
    out = {"epochs": epochs, "target_accuracy": target, "rounds": rounds}
    for key in rounds:
        out[key] = median_run(rounds[key])
    cluster, single, ddp = (out[k]["samples_per_sec"] for k in ("cluster_1ps_bsp", "torch_single", "torch_ddp"))
    out["ratios"] = {"cluster_1ps_bsp_over_torch_single": cluster / single, "cluster_1ps_bsp_over_ddp": cluster / ddp}
    tt, tp = out["cluster_1ps_bsp"]["time_to_target_s"], out["torch_single"]["time_to_target_s"]
    if tt is not None and tp is not None:
        out["ratios"]["time_to_target_cluster_over_torch_single"] = tt / tp
    # Each round's own ratios: the peers of a round ran minutes apart, not hours.
    out["ratios"]["round_ratios_over_torch_single"] = [
        c["samples_per_sec"] / t["samples_per_sec"] for c, t in zip(rounds["cluster_1ps_bsp"], rounds["torch_single"])]
    out["ratios"]["round_ratios_over_ddp"] = [
        c["samples_per_sec"] / t["samples_per_sec"] for c, t in zip(rounds["cluster_1ps_bsp"], rounds["torch_ddp"])]
    return out


def print_cnn(cnn):
    ddp, single = cnn["torch_ddp"]["samples_per_sec"], cnn["torch_single"]["samples_per_sec"]
    rows = []
    for key, label in (("cluster_1ps_bsp", "Custody cluster, 1 ps + 2 workers, BSP"),
                       ("torch_single", "PyTorch 1.13, 1 process, 2 threads, flush denormal"),
                       ("torch_ddp", "PyTorch 1.13 DDP, gloo, 2 processes, flush denormal")):
        x = cnn[key]
        rows.append((label, f"{x['samples_per_sec']:,.0f}", spread(x), f"{x['samples_per_sec'] / ddp:.2f}",
                     f"{x['samples_per_sec'] / single:.2f}", fmt_t(x["time_to_target_s"]),
                     " ".join(f"{a:.4f}" for a in x["accuracy_history"])))
    print()
    print(f"The seeds' CNN (conv2d 32x3x3, maxpool 2, dense 128, dense 10; Adam 1e-3, cosine; batch 64 per "
          f"process; {cnn['epochs']} epochs; medians of {len(cnn['rounds']['torch_ddp'])} alternating rounds):")
    print_table(("run", "samples/s", "spread", "x DDP", "x 1-proc", f"to {cnn['target_accuracy']}",
                 "test accuracy per epoch"), rows)
    r = cnn["ratios"]
    per_round = lambda v: ", ".join(f"{x:.2f}" for x in v)
    print(f"CNN cluster (1 ps, BSP) / PyTorch 1 process: {r['cluster_1ps_bsp_over_torch_single']:.2f} (target >= 0.7; "
          f"rounds {per_round(r['round_ratios_over_torch_single'])}); / PyTorch DDP: {r['cluster_1ps_bsp_over_ddp']:.2f} "
          f"(target >= 2; rounds {per_round(r['round_ratios_over_ddp'])})")
    if "time_to_target_cluster_over_torch_single" in r:
        print(f"CNN time to {cnn['target_accuracy']}: cluster / PyTorch 1 process: "
              f"{r['time_to_target_cluster_over_torch_single']:.2f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=12, help="epochs of every training run")
    p.add_argument("--target", type=float, default=0.88, help="test accuracy for time-to-accuracy")
    p.add_argument("--quick", action="store_true", help="2 epochs (the CNN 1), short micro-benchmarks (a smoke run)")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds of the rows the targets use")
    p.add_argument("--cnn", action="store_true", help="also the seeds' CNN rows (cluster, PyTorch, DDP)")
    p.add_argument("--cnn-only", action="store_true", help="only the seeds' CNN rows")
    p.add_argument("--cnn-epochs", type=int, default=6, help="epochs of the CNN runs (fashion_cnn.toml: 6)")
    p.add_argument("--cnn-target", type=float, default=0.91, help="test accuracy for the CNN's time-to-accuracy")
    args = p.parse_args()
    if args.quick:
        args.epochs = 2
        args.cnn_epochs = 1
    seconds = "0.5" if args.quick else "2"
    OUT.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="custody-compare-"))
    results = {"machine": {"cpus": os.cpu_count(), "blas": blas_in_use(),
                           "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}},
               "epochs": args.epochs, "target_accuracy": args.target}
    try:
        step = lambda what: print(f"[compare] {what}", file=sys.stderr, flush=True)
        if not args.cnn_only:
            step("math path vs Eigen ceiling")
            results["math"] = run_json([BIN / "custody-bench-math", "--ceiling", seconds])
            step("transport vs raw ZeroMQ")
            results["transport"] = run_json([BIN / "custody-bench-transport", seconds])
            torch_args = ["/usr/bin/python3", ROOT / "bench/torch_mlp.py"]
            # The rows the targets compare swing by up to 2x between runs on these machines:
            # run them in alternating rounds and report each one's median run and its spread.
            repeats = 1 if args.quick else args.repeats
            rounds = {"1ps-bsp": [], "torch_single": [], "torch_ddp": [], "math_one_thread": []}
            for i in range(repeats):
                step(f"round {i + 1} of {repeats}: cluster 1 ps + 2 workers BSP, PyTorch 1 process, PyTorch DDP, "
                     f"the math path on one thread")
                rounds["1ps-bsp"].append(run_cluster(work, 1, "bsp", args.epochs, args.target))
                rounds["torch_single"].append(run_json(
                    torch_args + ["single", "--epochs", str(args.epochs), "--threads", "2", "--target", str(args.target)],
                    env=torch_env()))
                rounds["torch_ddp"].append(run_json(
                    torch_args + ["ddp", "--epochs", str(args.epochs), "--target", str(args.target)], env=torch_env()))
                rounds["math_one_thread"].append(run_json(
                    [BIN / "custody-bench-math", str(job_file(work, args.epochs, "bsp")), str(args.target)]))
            results["rounds"] = rounds
            runs = {"1ps-bsp": median_run(rounds["1ps-bsp"])}
            results["torch_single"] = median_run(rounds["torch_single"])
            results["torch_ddp"] = median_run(rounds["torch_ddp"])
            results["math_one_thread"] = median_run(rounds["math_one_thread"])
            for servers, consistency in ((2, "bsp"), (1, "asp"), (2, "asp")):
                step(f"cluster: {servers} ps, 2 workers, {consistency}")
                runs[f"{servers}ps-{consistency}"] = run_cluster(work, servers, consistency, args.epochs, args.target)
            step("cluster: 1 ps in worker-1's process, 2 workers, bsp")
            runs["1ps-colocated-bsp"] = run_cluster(work, 1, "bsp", args.epochs, args.target, colocated=True)
            step("cluster: 1 ps, 2 workers, bsp, lineage off")
            runs["1ps-bsp-nostore"] = run_cluster(work, 1, "bsp", args.epochs, args.target, store=False)
            results["cluster"] = runs
            # One run each differs by the cluster's run-to-run noise (+-15% on 2 cores), more
            # than recording costs: alternate short runs with the store on and off and take the
            # medians; and time the recording itself in one process, where the noise is small.
            pairs, pair_epochs = (1, 1) if args.quick else (3, 3)
            step(f"lineage recording on/off: {pairs} alternating pairs of {pair_epochs}-epoch runs")
            on, off = [], []
            for _ in range(pairs):
                on.append(run_cluster(work, 1, "bsp", pair_epochs, args.target)["samples_per_sec"])
                off.append(run_cluster(work, 1, "bsp", pair_epochs, args.target, store=False)["samples_per_sec"])
            results["lineage_pairs"] = {"epochs": pair_epochs, "on_samples_per_sec": on, "off_samples_per_sec": off}
            step("recording one checkpoint vs training one epoch, in one process")
            results["recording"] = run_json([BIN / "custody-bench-recording"])
        if args.cnn or args.cnn_only:
            results["cnn"] = cnn_rows(work, args, step)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if not args.cnn_only:
        r, c = results, results["cluster"]
        ddp, single = r["torch_ddp"]["samples_per_sec"], r["torch_single"]["samples_per_sec"]
        base = c["1ps-bsp"]
        rows = []
        for key, label in (("1ps-bsp", "Custody cluster, 1 ps + 2 workers, BSP"),
                           ("2ps-bsp", "Custody cluster, 2 ps + 2 workers, BSP"),
                           ("1ps-asp", "Custody cluster, 1 ps + 2 workers, ASP"),
                           ("2ps-asp", "Custody cluster, 2 ps + 2 workers, ASP"),
                           ("1ps-colocated-bsp", "Custody cluster, 1 ps in worker-1's process + 2 workers, BSP"),
                           ("1ps-bsp-nostore", "  same as the first, lineage recording off")):
            x = c[key]
            rows.append((label, f"{x['samples_per_sec']:,.0f}", spread(x), f"{x['samples_per_sec'] / ddp:.2f}",
                         f"{x['samples_per_sec'] / single:.2f}", fmt_t(x["time_to_target_s"]), f"{x['final_test_accuracy']:.4f}"))
        for key, label in (("math_one_thread", "Custody math path alone, 1 process, 1 thread"),
                           ("torch_single", "PyTorch 1.13, 1 process, 2 threads, flush denormal"),
                           ("torch_ddp", "PyTorch 1.13 DDP, gloo, 2 processes, flush denormal")):
            x = r[key]
            rows.append((label, f"{x['samples_per_sec']:,.0f}", spread(x), f"{x['samples_per_sec'] / ddp:.2f}",
                         f"{x['samples_per_sec'] / single:.2f}", fmt_t(x["time_to_target_s"]), f"{x['accuracy_history'][-1]:.4f}"))
        print_table(("run", "samples/s", "spread", "x DDP", "x 1-proc", f"to {args.target}", "final acc"), rows)
        m, t = r["math"], r["transport"]
        lp = r["lineage_pairs"]
        lineage = statistics.median(lp["on_samples_per_sec"]) / statistics.median(lp["off_samples_per_sec"])
        ratios = {
            "cluster_1ps_bsp_over_ddp": base["samples_per_sec"] / ddp,
            "cluster_1ps_bsp_over_torch_single": base["samples_per_sec"] / single,
            "cluster_1ps_bsp_over_math_one_thread": base["samples_per_sec"] / r["math_one_thread"]["samples_per_sec"],
            "cluster_1ps_colocated_bsp_over_ddp": c["1ps-colocated-bsp"]["samples_per_sec"] / ddp,
            "math_path_over_eigen_ceiling": m["ratio"],
            "transport_over_raw_zeromq": t["ratio"],
            "lineage_on_over_off": lineage,
            "recording_over_training_epoch": r["recording"]["ratio"],
        }
        tt, tp = base["time_to_target_s"], r["torch_single"]["time_to_target_s"]
        if tt is not None and tp is not None:
            ratios["time_to_target_cluster_over_torch_single"] = tt / tp
        results["ratios"] = ratios
        print()
        print(f"math path, one thread: {m['custody_samples_per_sec']:,.0f} samples/s = {m['ratio']:.2f} x the Eigen "
              f"products alone ({m['eigen_ceiling_samples_per_sec']:,.0f}; target >= 0.80)")
        print(f"1 MiB push/pull through Custody's transport: {t['custody_gb_per_sec']:.2f} GB/s = {t['ratio']:.2f} x raw "
              f"ZeroMQ ({t['raw_zeromq_gb_per_sec']:.2f} GB/s; target >= 0.80); 64 B round trip "
              f"{t['custody_round_trip_us_64b']:.0f} us vs {t['raw_zeromq_round_trip_us_64b']:.0f} us")
        print(f"lineage recording on / off (1 ps, BSP; medians of {len(lp['on_samples_per_sec'])} alternating "
              f"runs of {lp['epochs']} epochs each way): {lineage:.3f} (target >= 0.97); recording one checkpoint in one "
              f"process: {r['recording']['record_checkpoint_ms']:.1f} ms = {100 * r['recording']['ratio']:.2f}% "
              f"of an epoch's training (one checkpoint per epoch)")
        print(f"cluster (1 ps, BSP; medians of {len(r['rounds']['1ps-bsp'])} alternating rounds) / the same math on one "
              f"thread: {ratios['cluster_1ps_bsp_over_math_one_thread']:.2f} (target > 1.0); / PyTorch 1 process: "
              f"{ratios['cluster_1ps_bsp_over_torch_single']:.2f} (target >= 1.0); / PyTorch DDP: "
              f"{ratios['cluster_1ps_bsp_over_ddp']:.2f} (target >= 2.5); with the server in worker-1's "
              f"process: {ratios['cluster_1ps_colocated_bsp_over_ddp']:.2f} x DDP")
        if "time_to_target_cluster_over_torch_single" in ratios:
            print(f"time to {args.target}: cluster / PyTorch 1 process: {ratios['time_to_target_cluster_over_torch_single']:.2f} "
                  f"(target <= 1)")
        print(f"BLAS for PyTorch: {results['machine']['blas']}; Eigen SIMD: {m['simd']}")
    if "cnn" in results:
        print_cnn(results["cnn"])
    (OUT / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT / 'compare.json'}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A job file through the local cluster (coordinator, 1 parameter server, 2 workers, BSP,
separate processes, as bench/compare.py starts them): samples/s, the test accuracy after
every epoch, and the wall time from the job's start until a status poll (every 0.5 s)
first shows the target accuracy. For the seeds' CNN against the MLP (issue 17):

  bench/cnn_cluster.py configs/jobs/fashion_cnn.toml 0.91
  bench/cnn_cluster.py configs/jobs/fashion_mlp.toml 0.88

Prints one JSON line. The CNN rows against PyTorch: bench/compare.py --cnn-only.
"""
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare import Cluster  # noqa: E402


def main():
    job = pathlib.Path(sys.argv[1]).resolve()
    target = float(sys.argv[2]) if len(sys.argv) > 2 else 0.91
    work = pathlib.Path(tempfile.mkdtemp(prefix="cnn-cluster-"))
    c = Cluster(work, 1, 2, store=True)
    try:
        job_id = c.cli("submit", str(job), "--as", "bench")
        reached = None
        while True:
            s = c.cli("status", job_id, "--json")
            if reached is None and s["test_accuracy"] is not None and s["test_accuracy"] >= target \
                    and s["started_at_ms"]:
                reached = time.time() * 1000 - s["started_at_ms"]
            if s["state"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.5)
        if s["state"] != "completed":
            raise SystemExit(f"job {job_id} {s['state']}: {s['message']}")
        seconds = (s["finished_at_ms"] - s["started_at_ms"]) / 1000
        # Steps are per worker; each of the 2 workers trains batch_size samples a step.
        batch = next(int(l.split("=")[1].split("#")[0]) for l in job.read_text().splitlines()
                     if l.strip().startswith("batch_size"))
        print(json.dumps({"job": str(job.name), "servers": 1, "workers": 2, "consistency": "bsp",
                          "samples_per_sec": s["total_steps"] * 2 * batch / seconds, "train_seconds": seconds,
                          "target": target, "time_to_target_s": None if reached is None else reached / 1000,
                          "final_test_accuracy": s["test_accuracy"], "accuracy_history": s["accuracy_history"]}))
    finally:
        c.stop()


if __name__ == "__main__":
    main()

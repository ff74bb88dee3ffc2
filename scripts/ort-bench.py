#!/usr/bin/env python3
"""ONNX Runtime's side of the ONNX CPU benchmark (crates/byob-bench/src/bin/onnx.rs).

Sessions use the CPU execution provider with intra_op_num_threads=N,
inter_op_num_threads=1, sequential execution and ORT_ENABLE_ALL. Latency is
the wall time of `session.run` alone (time.perf_counter).

    scripts/ort-bench.py [--models DIR] [--threads N] [--runs R] [--only NAME]
        Standalone: warms up, times R runs of each model of DIR/manifest.json
        and prints {"threads": N, "median_ms": {name: ms}} as JSON.

    scripts/ort-bench.py --serve [--models DIR] [--threads N]
        For the Rust bench, which takes turns with byob and tract: reads one
        JSON command per line on stdin, answers one JSON line on stdout.
          {"cmd": "output", "model": M}   run once, write M.ort-output.bin
                                          (little-endian f32); answers
                                          {"file": ..., "shape": [...]}
          {"cmd": "time", "model": M, "runs": k, "record": bool}
                                          answers {"seconds": [...]}; recorded
                                          runs count towards the medians
          {"cmd": "profile", "model": M, "runs": k}
                                          ORT's own profiler: each node's median
                                          milliseconds over k runs, and their
                                          sums by op type
          {"cmd": "quit"}                 answers {"threads": N, "median_ms": {...}}
                                          over the recorded runs, and exits
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def options(threads, profile_prefix=None):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.log_severity_level = 3
    if profile_prefix:
        o.enable_profiling = True
        o.profile_file_prefix = profile_prefix
    return o


class Bench:
    def __init__(self, models_dir, threads):
        self.dir = models_dir
        self.threads = threads
        with open(os.path.join(models_dir, "manifest.json")) as f:
            self.manifest = {m["name"]: m for m in json.load(f)["models"]}
        self.sessions = {}
        self.inputs = {}
        self.recorded = {}

    def session(self, name):
        if name not in self.sessions:
            m = self.manifest[name]
            path = os.path.join(self.dir, m["file"])
            self.sessions[name] = ort.InferenceSession(path, options(self.threads), providers=["CPUExecutionProvider"])
            x = np.fromfile(os.path.join(self.dir, m["input"]["file"]), dtype="<f4").reshape(m["input"]["shape"])
            self.inputs[name] = {m["input"]["name"]: x}
        return self.sessions[name], self.inputs[name]

    def output(self, name):
        session, feeds = self.session(name)
        (y,) = session.run(None, feeds)
        file = os.path.join(self.dir, f"{name}.ort-output.bin")
        np.ascontiguousarray(y, dtype="<f4").tofile(file)
        return {"file": file, "shape": list(y.shape)}

    def time(self, name, runs, record=True):
        session, feeds = self.session(name)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feeds)
            seconds.append(time.perf_counter() - start)
        if record:
            self.recorded.setdefault(name, []).extend(seconds)
        return {"seconds": seconds}

    def profile(self, name, runs):
        m = self.manifest[name]
        prefix = os.path.join(self.dir, f"{name}.ort-profile")
        session = ort.InferenceSession(os.path.join(self.dir, m["file"]), options(self.threads, prefix), providers=["CPUExecutionProvider"])
        self.session(name)
        feeds = self.inputs[name]
        for _ in range(3):
            session.run(None, feeds)
        # Only the runs after the warm-up count: the profile holds them all,
        # so count the "model_run" events and keep the last `runs`.
        for _ in range(runs):
            session.run(None, feeds)
        file = session.end_profiling()
        with open(file) as f:
            events = json.load(f)
        run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
        since = run_starts[-runs]
        durations, ops = {}, {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < since:
                continue
            node = e["name"][: -len("_kernel_time")]
            ops[node] = e.get("args", {}).get("op_name", "?")
            durations.setdefault(node, []).append(e["dur"] / 1000.0)
        # Each node's median over the runs (a mean would let one slow spell
        # of the shared machine count for all).
        per_node, per_op = {}, {}
        for node, d in durations.items():
            per_node[node] = float(np.median(d))
            per_op[ops[node]] = per_op.get(ops[node], 0.0) + per_node[node]
        model_ms = float(np.median([e["dur"] for e in events if e.get("name") == "model_run" and e["ts"] >= since])) / 1000.0
        os.remove(file)
        return {"per_op_ms": per_op, "per_node_ms": per_node, "model_run_ms": model_ms, "optimized_nodes": len(per_node)}

    def medians(self):
        # The upper median for even counts, as the Rust bench takes it.
        return {"threads": self.threads, "median_ms": {k: sorted(v)[len(v) // 2] * 1e3 for k, v in self.recorded.items()}}


def serve(bench):
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            kind = cmd["cmd"]
            if kind == "output":
                answer = bench.output(cmd["model"])
            elif kind == "time":
                answer = bench.time(cmd["model"], int(cmd.get("runs", 1)), bool(cmd.get("record", True)))
            elif kind == "profile":
                answer = bench.profile(cmd["model"], int(cmd.get("runs", 10)))
            elif kind == "quit":
                print(json.dumps(bench.medians()), flush=True)
                return
            else:
                answer = {"error": f"unknown command {kind!r}"}
        except Exception as e:  # answer, so the caller can say what went wrong
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=os.path.join(ROOT, "target/bench-models"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    bench = Bench(args.models, args.threads)
    if args.serve:
        print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
        serve(bench)
        return
    for name in bench.manifest:
        if args.only and name != args.only:
            continue
        bench.time(name, 3, record=False)
        bench.time(name, args.runs)
    print(json.dumps(bench.medians()))


if __name__ == "__main__":
    main()

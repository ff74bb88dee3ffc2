#!/usr/bin/env python3
"""ONNX Runtime's side of the audio-model benchmark
(crates/byob-bench/src/bin/onnx_audio.rs).

    scripts/ort-audio-bench.py --models DIR --threads N --case CASE --calls K

Cases (the models of crates/byob-tensor/tests/data/real-models/models):
* vad_step: silero_vad.onnx at 16 kHz, batch 1: K calls of 576 samples (64
  of context, 512 new), each fed the state the previous call returned; the
  median wall time of one `session.run`.
* vad_60s: silero_vad_16k_sequence.onnx on 60 s of audio as one sequence
  (1,875 chunks of 576 samples); the median of K runs.
* basic_pitch: basic_pitch_nmp.onnx on one 2-second window (43,844 samples);
  the median of K runs.
* encoder_64, encoder_256: transformer_encoder.onnx (scripts/
  transformer_encoder.py), batch 1, that sequence length, nothing masked;
  the median of K runs.

Sessions use the CPU execution provider, intra_op_num_threads=N,
inter_op_num_threads=1, ORT_ENABLE_ALL. Prints {"median_ms": M, "runs": K}.
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort


def session(models, name, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.path.join(models, name), options, providers=["CPUExecutionProvider"])


def timed(run, calls, warmup=5):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", required=True)
    parser.add_argument("--calls", type=int, default=100)
    a = parser.parse_args()
    rng = np.random.default_rng(0)
    if a.case == "vad_step":
        s = session(a.models, "silero_vad.onnx", a.threads)
        chunk = (0.1 * rng.standard_normal((1, 576))).astype(np.float32)
        sr = np.array(16000, np.int64)
        state = [np.zeros((2, 1, 128), np.float32)]

        def step():
            out = s.run(None, {"input": chunk, "state": state[0], "sr": sr})
            state[0] = out[1]

        median = timed(step, a.calls, warmup=50)
    elif a.case == "vad_60s":
        s = session(a.models, "silero_vad_16k_sequence.onnx", a.threads)
        x = (0.1 * rng.standard_normal((1875, 576))).astype(np.float32)
        h = np.zeros((1, 1, 128), np.float32)
        median = timed(lambda: s.run(None, {"input": x, "h": h, "c": h}), a.calls, warmup=2)
    elif a.case == "basic_pitch":
        s = session(a.models, "basic_pitch_nmp.onnx", a.threads)
        x = (0.1 * rng.standard_normal((1, 43844, 1))).astype(np.float32)
        median = timed(lambda: s.run(None, {s.get_inputs()[0].name: x}), a.calls, warmup=3)
    elif a.case in ("encoder_64", "encoder_256"):
        s = session(a.models, "transformer_encoder.onnx", a.threads)
        seq = int(a.case.split("_")[1])
        x = rng.standard_normal((1, seq, 128)).astype(np.float32)
        mask = np.ones((1, seq), bool)
        median = timed(lambda: s.run(None, {"x": x, "mask": mask}), a.calls, warmup=5)
    else:
        raise SystemExit(f"unknown case {a.case!r}")
    print(json.dumps({"median_ms": median, "runs": a.calls}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ONNX Runtime's side of the neural-node benchmark
(crates/byob-bench/src/bin/neural_node.rs).

    scripts/ort-neural-bench.py --model silero_vad.onnx --audio speech.wav --seconds S

Streams S seconds of the 16 kHz WAV (looped) through Silero VAD as an
AudioWorklet would with ONNX Runtime: each 128-sample render quantum is
copied into a frame buffer after 64 samples of context; when 512 new
samples are in, `session.run` (one intra-op thread: the render thread's
own) takes the frame and the state, and the context is carried over.
Times, per quantum, the copies and the run (not the Python loop around
them). Prints {"per_second_ms": …, "worst_quantum_ms": …, "inferences": …}.
"""
import argparse
import json
import struct
import time

import numpy as np
import onnxruntime as ort

QUANTUM, FRAME, CONTEXT, RATE = 128, 512, 64, 16000


def read_float_wav(path):
    data = open(path, "rb").read()
    at = data.index(b"data")
    size = struct.unpack("<I", data[at + 4:at + 8])[0]
    return np.frombuffer(data[at + 8:at + 8 + size], "<f4")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    audio = read_float_wav(a.audio)
    quanta = int(a.seconds * RATE) // QUANTUM
    warmup = RATE // QUANTUM
    frame = np.zeros((1, CONTEXT + FRAME), np.float32)
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(RATE, np.int64)
    filled, total, worst, inferences = 0, 0.0, 0.0, 0
    for q in range(warmup + quanta):
        start = q * QUANTUM % (len(audio) - QUANTUM)
        block = audio[start:start + QUANTUM]
        t0 = time.perf_counter()
        # The worklet's copy of the engine's input into the model's buffer.
        frame[0, CONTEXT + filled:CONTEXT + filled + QUANTUM] = block
        filled += QUANTUM
        if filled == FRAME:
            _, state = session.run(None, {"input": frame, "state": state, "sr": sr})
            frame[0, :CONTEXT] = frame[0, -CONTEXT:]
            filled = 0
            inferences += q >= warmup
        spent = time.perf_counter() - t0
        if q >= warmup:
            total += spent
            worst = max(worst, spent)
    seconds = quanta * QUANTUM / RATE
    print(json.dumps({"per_second_ms": total / seconds * 1e3, "worst_quantum_ms": worst * 1e3, "inferences": inferences}))


if __name__ == "__main__":
    main()

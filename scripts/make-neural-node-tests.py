#!/usr/bin/env python3
"""Makes the neural node's test data: speech from espeak-ng (Debian package
espeak-ng; sox resamples it), and Silero VAD's probabilities for it from
ONNX Runtime, framed as the "onnx" node frames it (512 new samples after
64 of context, zeros before the start, state carried over).

Also writes small models that test the node's timing and errors
(crates/byob-neural/tests/data/*.onnx, made with the onnx package).

Writes examples/graphs/speech.wav (16 kHz, 32-bit float, so that the
engine reads exactly the samples the reference saw) and
crates/byob-neural/tests/data/silero_16k_probs.npy.

Needs: espeak-ng, sox, and pip packages numpy and onnxruntime.
Run from the repository root: python3 scripts/make-neural-node-tests.py
"""
import subprocess, tempfile, wave, struct, os, sys
import numpy as np
import onnxruntime as ort

RATE = 16000
MODEL = "crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx"
SPEECH = "examples/graphs/speech.wav"
PROBS = "crates/byob-neural/tests/data/silero_16k_probs.npy"
FRAME, CONTEXT = 512, 64

def say(text, tmp):
    raw = os.path.join(tmp, "raw.wav")
    out = os.path.join(tmp, "16k.wav")
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", raw, text], check=True)
    subprocess.run(["sox", "-D", raw, "-r", str(RATE), "-c", "1", "-b", "16", out], check=True)
    with wave.open(out) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return data

def write_float_wav(path, samples):
    # A WAVE_FORMAT_IEEE_FLOAT file, written by hand (the wave module
    # writes integer PCM only).
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, RATE, RATE * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)

def small_models():
    from onnx import helper, TensorProto, save
    data = "crates/byob-neural/tests/data/"
    f32 = TensorProto.FLOAT
    # window.onnx: y = x[:, :-64], the window's first N - 64 samples: with
    # context 64, output sample t is input sample t - frame - 64.
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "start", "end", "axis"], ["y"])],
        "window",
        [helper.make_tensor_value_info("x", f32, [1, "n"])],
        [helper.make_tensor_value_info("y", f32, [1, "m"])],
        [helper.make_tensor("start", TensorProto.INT64, [1], [0]), helper.make_tensor("end", TensorProto.INT64, [1], [-64]),
         helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), data + "window.onnx")
    # fails_when_loud.onnx: looks up one of four values at index
    # 100 * max(x): fine on silence, out of range (a run-time error) once
    # the input passes 0.04.
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
         helper.make_node("Mul", ["peak", "hundred"], ["scaled"]),
         helper.make_node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "index"], ["y"], axis=0)],
        "fails_when_loud",
        [helper.make_tensor_value_info("x", f32, [1, "n"])],
        [helper.make_tensor_value_info("y", f32, [])],
        [helper.make_tensor("hundred", f32, [], [100.0]), helper.make_tensor("table", f32, [4], [0.1, 0.2, 0.3, 0.4])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), data + "fails_when_loud.onnx")
    # fixed_320.onnx: an input of exactly 320 samples, mean of them.
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], keepdims=1)],
        "fixed_320",
        [helper.make_tensor_value_info("x", f32, [1, 320])],
        [helper.make_tensor_value_info("y", f32, [1, 1])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), data + "fixed_320.onnx")
    # second_channel_mean_{first,last}.onnx: the mean of channel 1 over the
    # window, from [1, 2, N] (channels-first) or [1, N, 2] (channels-last).
    for layout, axis, shape in [("first", 1, [1, 2, "n"]), ("last", 2, [1, "n", 2])]:
        graph = helper.make_graph(
            [helper.make_node("Slice", ["x", "one", "two", "axis"], ["second"]),
             helper.make_node("ReduceMean", ["second"], ["y"], keepdims=0)],
            "second_channel_mean_" + layout,
            [helper.make_tensor_value_info("x", f32, shape)],
            [helper.make_tensor_value_info("y", f32, [])],
            [helper.make_tensor("one", TensorProto.INT64, [1], [1]), helper.make_tensor("two", TensorProto.INT64, [1], [2]),
             helper.make_tensor("axis", TensorProto.INT64, [1], [axis])])
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), data + f"second_channel_mean_{layout}.onnx")

    # slow.onnx: far slower than a render quantum (a chain of 512 x 512
    # products on a matrix that the input nudges, so nothing folds), for
    # mode "worker" under a real-time clock. Its output is one value.
    n = 512
    nodes = [helper.make_node("ReduceSum", ["x"], ["sum"], keepdims=0),
             helper.make_node("Mul", ["sum", "tiny"], ["nudge"]),
             helper.make_node("ConstantOfShape", ["dims"], ["base"], value=helper.make_tensor("v", f32, [1], [1.0 / n])),
             helper.make_node("Add", ["base", "nudge"], ["m0"])]
    for i in range(8):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "m0"], [f"m{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", ["m8"], ["y"], keepdims=0))
    graph = helper.make_graph(nodes, "slow",
        [helper.make_tensor_value_info("x", f32, [1, "n"])],
        [helper.make_tensor_value_info("y", f32, [])],
        [helper.make_tensor("tiny", f32, [], [1e-6]), helper.make_tensor("dims", TensorProto.INT64, [2], [n, n])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), data + "slow.onnx")

def main():
    small_models()
    with tempfile.TemporaryDirectory() as tmp:
        first = say("Bring your own buffer. The engine mixes straight into the model's memory.", tmp)
        second = say("Silence, then speech again.", tmp)
    rng = np.random.default_rng(7)
    gap = lambda seconds: np.zeros(int(seconds * RATE), np.float32)
    audio = np.concatenate([gap(0.6), 0.8 * first, gap(1.2), 0.8 * second, gap(0.8)])
    # A faint noise floor, as a microphone has.
    audio = (audio + rng.normal(0, 1e-3, audio.shape)).astype(np.float32)
    write_float_wav(SPEECH, audio)

    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    probs = []
    for k in range(len(audio) // FRAME):
        frame = audio[k * FRAME:(k + 1) * FRAME]
        x = np.concatenate([context, frame])[None, :]
        out, state = session.run(["output", "stateN"], {"input": x, "state": state, "sr": np.array(RATE, np.int64)})
        probs.append(out[0, 0])
        context = x[0, -CONTEXT:]
    probs = np.array(probs, np.float32)
    os.makedirs(os.path.dirname(PROBS), exist_ok=True)
    np.save(PROBS, probs)
    print(f"{SPEECH}: {len(audio) / RATE:.2f} s; {len(probs)} frames, {np.mean(probs > 0.5):.0%} speech")

if __name__ == "__main__":
    main()

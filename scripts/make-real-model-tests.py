#!/usr/bin/env python3
"""Builds the real-model conformance cases in
crates/byob-tensor/tests/data/real-models/ from the public wheels that ship
the models, with ONNX Runtime's outputs as the reference.

Models (pinned wheels, downloaded with pip, never installed):
* silero-vad 6.2.3 (MIT): silero_vad.onnx and its five other exports;
* basic-pitch 0.4.0 (Apache-2.0): saved_models/icassp_2022/nmp.onnx.

Cases (each a folder with MODEL, naming the model file, and
test_data_set_N/input_K.pb, output_K.pb as in ONNX's backend tests):
* silero_vad*: 16 kHz (512 new samples per call after a 64-sample context,
  as the silero-vad package feeds them) and 8 kHz (256 after 32), batch 1
  and 3 where the export takes them; three calls in a row, each data set
  fed the state the previous call returned;
* silero_vad_16k_sequence: 8 chunks of 576 samples as one sequence;
* basic_pitch_nmp_2s: one 2-second window (43,844 samples at 22,050 Hz);
* transformer_encoder_b2_s64: a two-layer encoder that
  scripts/transformer_encoder.py builds with seeded random weights, batch 2,
  sequence 64, padded positions masked (`--transformer-only` rebuilds just
  this case, without downloading the wheels).

The audio is synthetic and fixed (seeded noise, tone bursts), so the files
are reproducible:
    python3 -m pip install onnx==1.22.0 onnxruntime==1.32.0 numpy && scripts/make-real-model-tests.py
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transformer_encoder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "crates", "byob-tensor", "tests", "data", "real-models")
WHEELS = {"silero-vad": "6.2.3", "basic-pitch": "0.4.0"}


def fetch(work):
    """Downloads the pinned wheels and unpacks them under work/."""
    for name, version in WHEELS.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", work, f"{name}=={version}"], check=True)
    for wheel in glob.glob(os.path.join(work, "*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(os.path.join(work, "unpacked"))
    return os.path.join(work, "unpacked")


def audio(samples, rate, seed):
    """Noise with tone bursts: speech-like energy changes for a VAD."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    bursts = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    tone = 0.4 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 5 * t)) * t) * bursts
    return (tone + 0.02 * rng.standard_normal(samples)).astype(np.float32)


def write_case(name, model_file, data_sets):
    """data_sets: [(inputs, outputs)], each a list of numpy arrays in the
    model's order."""
    case = os.path.join(TARGET, name)
    os.makedirs(case)
    with open(os.path.join(case, "MODEL"), "w") as f:
        f.write(model_file + "\n")
    for k, (inputs, outputs) in enumerate(data_sets):
        folder = os.path.join(case, f"test_data_set_{k}")
        os.makedirs(folder)
        for prefix, arrays in (("input", inputs), ("output", outputs)):
            for i, a in enumerate(arrays):
                with open(os.path.join(folder, f"{prefix}_{i}.pb"), "wb") as f:
                    f.write(numpy_helper.from_array(np.asarray(a)).SerializeToString())


def silero_calls(session, rate, batch, calls, takes_sr):
    context, new = (64, 512) if rate == 16000 else (32, 256)
    names = [i.name for i in session.get_inputs()]
    state = np.zeros((2, batch, 128), np.float32)
    signal = np.stack([audio((calls + 1) * new, rate, seed=b) for b in range(batch)])
    data_sets = []
    for c in range(calls):
        start = c * new
        chunk = signal[:, start : start + context + new]
        feeds = {"input": chunk, "state": state}
        if takes_sr:
            feeds["sr"] = np.array(rate, np.int64)
        outputs = session.run(None, feeds)
        data_sets.append(([feeds[n] for n in names], outputs))
        state = outputs[1]
    return data_sets


README = """# Real models for byob's conformance tests

Copied unchanged from public wheels by scripts/make-real-model-tests.py,
which also writes the cases beside this folder (inputs, and ONNX Runtime's
outputs as the reference). The licences come with the models:

| file | wheel | licence |
|---|---|---|
| silero_vad*.onnx | silero-vad 6.2.3 (snakers4/silero-vad) | MIT, silero_vad.LICENSE |
| basic_pitch_nmp.onnx (saved_models/icassp_2022/nmp.onnx) | basic-pitch 0.4.0 (Spotify) | Apache-2.0, basic_pitch.LICENSE and basic_pitch.NOTICE |
| transformer_encoder.onnx | none: built by scripts/transformer_encoder.py, seeded random weights | the project's own |
"""


def main():
    if sys.argv[1:] == ["--transformer-only"]:
        shutil.rmtree(os.path.join(TARGET, "transformer_encoder_b2_s64"), ignore_errors=True)
        transformer_encoder.write(os.path.join(TARGET, "models"), write_case)
        return
    shutil.rmtree(TARGET, ignore_errors=True)
    models = os.path.join(TARGET, "models")
    os.makedirs(models)
    with tempfile.TemporaryDirectory() as work:
        unpacked = fetch(work)
        silero = os.path.join(unpacked, "silero_vad", "data")
        for f in sorted(glob.glob(os.path.join(silero, "*.onnx"))):
            shutil.copy(f, models)
        shutil.copy(os.path.join(unpacked, "basic_pitch", "saved_models", "icassp_2022", "nmp.onnx"), os.path.join(models, "basic_pitch_nmp.onnx"))
        for licence in glob.glob(os.path.join(unpacked, "*.dist-info", "**", "LICENSE*"), recursive=True) + glob.glob(os.path.join(unpacked, "*.dist-info", "NOTICE*")):
            package = os.path.relpath(licence, unpacked).split("-")[0]
            shutil.copy(licence, os.path.join(models, f"{package}.{os.path.basename(licence)}"))

    def session(model):
        return ort.InferenceSession(os.path.join(models, model), providers=["CPUExecutionProvider"])

    # (export, rates, batches): what each export's inputs allow.
    for export, rates, batches in [
        ("silero_vad", (16000, 8000), (1, 3)),
        ("silero_vad_16k_op15", (16000,), (1, 3)),
        ("silero_vad_half", (16000,), (1, 3)),
        ("silero_vad_op18_ifless", (16000, 8000), (1, 3)),
        ("silero_vad_openvino_16k", (16000,), (1,)),
    ]:
        s = session(export + ".onnx")
        takes_sr = any(i.name == "sr" for i in s.get_inputs())
        for rate in rates:
            for batch in batches:
                write_case(f"{export}_{rate // 1000}k_batch{batch}", export + ".onnx", silero_calls(s, rate, batch, 3, takes_sr))

    s = session("silero_vad_16k_sequence.onnx")
    chunks = audio(8 * 512 + 64, 16000, seed=7)
    x = np.stack([chunks[k * 512 : k * 512 + 576] for k in range(8)])
    h = np.zeros((1, 1, 128), np.float32)
    write_case("silero_vad_16k_sequence_8_chunks", "silero_vad_16k_sequence.onnx", [([x, h, h], s.run(None, {"input": x, "h": h, "c": h}))])

    s = session("basic_pitch_nmp.onnx")
    x = audio(43844, 22050, seed=11).reshape(1, 43844, 1)
    write_case("basic_pitch_nmp_2s", "basic_pitch_nmp.onnx", [([x], s.run(None, {s.get_inputs()[0].name: x}))])
    transformer_encoder.write(models, write_case)
    with open(os.path.join(models, "README.md"), "w") as f:
        f.write(README)
    print(f"wrote the real-model cases to {os.path.normpath(TARGET)}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds the models of the ONNX CPU benchmark (`cargo run --release -p
byob-bench --bin onnx`) into a git-ignored folder (default target/bench-models).

* resnet50, squeezenet, shufflenet: the architectures of the ONNX 1.22.0
  `light` models (crates/byob-tensor/tests/data/onnx-1.22.0/light), whose
  weights come from ConstantOfShape nodes (every weight one constant). Each such
  node becomes an initializer of the same shape with random values, and so do
  the few weights the light models carry as initializers: Conv weights He
  normal (std sqrt(2 / fan_in)), Gemm weights std sqrt(1 / fan_in), biases and
  BatchNormalization parameters near the identity, so activations stay finite
  and the softmax is not one-hot. Everything else (nodes, attributes, opset 9,
  Reshape shape initializers) is kept. The IR version becomes 4 so that
  initializers need no longer be listed as graph inputs: with IR 3 ONNX Runtime
  must treat them as overridable inputs and cannot fold or fuse them.
* mlp: 784 -> 1024 -> 1024 -> 1024 -> 10, Gemm (transB) + Relu, batch 64,
  opset 9 like the others.

Every model gets a fixed-seed random input (NAME.input.bin, little-endian f32)
and is checked with onnx.checker and run once by ONNX Runtime. manifest.json
lists them for the benchmark and for scripts/ort-bench.py.

    scripts/make-bench-models.py [--out DIR] [--seed N]
    scripts/make-bench-models.py [--out DIR] --nodes resnet50   # for `onnx --profile resnet50`
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIGHT = os.path.join(ROOT, "crates/byob-tensor/tests/data/onnx-1.22.0/light")

# Scale of the BatchNormalization that ends a residual branch (its output
# feeds a Sum), so the residual stream grows slowly through the blocks.
BRANCH_SCALE = 0.5


def consumers(graph):
    uses = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, k))
    return uses


def random_weight(rng, shape, uses, feeds_sum):
    """Random values for a weight of `shape`, chosen by how it is used."""
    shape = tuple(int(d) for d in shape)
    if len(uses) != 1:
        raise SystemExit(f"a weight used {len(uses)} times; expected once")
    node, k = uses[0]
    op = node.op_type
    if op == "Conv" and k == 1:
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if op == "Conv" and k == 2:
        return rng.normal(0.0, 0.01, shape)
    if op == "Gemm" and k == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        fan_in = shape[1] if trans_b else shape[0]
        return rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
    if op == "Gemm" and k == 2:
        return rng.normal(0.0, 0.01, shape)
    if op == "BatchNormalization":
        scale = BRANCH_SCALE if node.output[0] in feeds_sum else 1.0
        return {
            1: scale * rng.uniform(0.8, 1.2, shape),  # scale
            2: rng.normal(0.0, 0.05, shape),  # bias
            3: rng.normal(0.0, 0.05, shape),  # running mean
            4: rng.uniform(0.8, 1.2, shape),  # running variance
        }[k]
    raise SystemExit(f"no rule for input {k} of {op}")


def randomise(name, rng):
    model = onnx.load(os.path.join(LIGHT, f"light_{name}.onnx"))
    graph = model.graph
    uses = consumers(graph)
    feeds_sum = {x for n in graph.node if n.op_type in ("Sum", "Add") for x in n.input}
    inits = {t.name: t for t in graph.initializer}
    weights = {}  # name -> array, in a fixed order
    keep_nodes = []
    dropped_inits = set()
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = numpy_helper.to_array(inits[node.input[0]])
            weights[node.output[0]] = random_weight(rng, shape, uses.get(node.output[0], []), feeds_sum)
            dropped_inits.add(node.input[0])
        else:
            keep_nodes.append(node)
    for t in graph.initializer:
        if t.name in dropped_inits or t.name in weights:
            continue
        if t.data_type == TensorProto.FLOAT and uses.get(t.name):
            node, _ = uses[t.name][0]
            if node.op_type in ("Conv", "Gemm", "BatchNormalization"):
                weights[t.name] = random_weight(rng, t.dims, uses[t.name], feeds_sum)
    # Unused initializers (a stray [1, 1] blob in resnet50) go.
    used = {x for n in keep_nodes for x in n.input}
    kept_inits = [t for t in graph.initializer if t.name not in dropped_inits and t.name not in weights and t.name in used]
    new_inits = kept_inits + [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in weights.items()]
    inputs = [i for i in graph.input if i.name not in inits]
    new_graph = helper.make_graph(keep_nodes, f"{name}_random", inputs, list(graph.output), new_inits)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import), producer_name="byob make-bench-models.py")
    out.ir_version = 4
    return out


def calibrate_logits(model, x, target_rms=2.0):
    """Scales the last Conv or Gemm before the Softmax so the logits have an
    RMS of `target_rms`: random weights leave the residual stream of some
    models large, and a softmax of large logits is one-hot. Relu, pooling and
    reshapes between that layer and the Softmax are positively homogeneous,
    so scaling its weight and bias scales the logits."""
    import onnxruntime as ort

    graph = model.graph
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    if not softmax:
        return
    producer = {o: n for n in graph.node for o in n.output}
    logits = softmax[-1].input[0]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_empty_tensor_value_info(logits))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {graph.input[0].name: x})
    factor = target_rms / float(np.sqrt(np.mean(np.square(y))))
    node = producer[logits]
    while node.op_type in ("Relu", "GlobalAveragePool", "AveragePool", "Reshape", "Flatten", "Dropout"):
        node = producer[node.input[0]]
    if node.op_type not in ("Conv", "Gemm"):
        raise SystemExit(f"calibrate_logits: reached {node.op_type}, not a Conv or Gemm")
    inits = {t.name: t for t in graph.initializer}
    for name in node.input[1:3]:
        t = inits[name]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), name))


def mlp(rng, batch=64, sizes=(784, 1024, 1024, 1024, 10)):
    nodes, inits = [], []
    x = "input"
    for layer, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        last = layer == len(sizes) - 2
        w = rng.normal(0.0, np.sqrt((1.0 if last else 2.0) / n_in), (n_out, n_in))
        b = rng.normal(0.0, 0.01, (n_out,))
        inits += [numpy_helper.from_array(w.astype(np.float32), f"fc{layer}.weight"), numpy_helper.from_array(b.astype(np.float32), f"fc{layer}.bias")]
        y = "logits" if last else f"fc{layer}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{layer}.weight", f"fc{layer}.bias"], [y], name=f"fc{layer}", transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{layer}"], name=f"relu{layer}"))
            y = f"relu{layer}"
        x = y
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="byob make-bench-models.py")
    model.ir_version = 4
    return model


def dims(value_info):
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check(model, path, x):
    """onnx.checker, then one ONNX Runtime run: finite, not degenerate."""
    import onnxruntime as ort

    onnx.checker.check_model(path, full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {model.graph.input[0].name: x})
    if not np.all(np.isfinite(y)):
        raise SystemExit(f"{path}: ONNX Runtime's output is not finite")
    return y


def fold_batch_norms(model):
    """Folds each BatchNormalization into the Conv before it (when that Conv
    feeds nothing else), as byob's and ONNX Runtime's optimisers do."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses = consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    drop = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization":
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(uses[conv.output[0]]) != 1:
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        s, b, m, v = (numpy_helper.to_array(inits[x]).astype(np.float64) for x in bn.input[1:5])
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
        k = s / np.sqrt(v + eps)
        w_name, b_name = conv.output[0] + "_folded_w", conv.output[0] + "_folded_b"
        graph.initializer.extend([numpy_helper.from_array((w * k[:, None, None, None]).astype(np.float32), w_name), numpy_helper.from_array(((bias - m) * k + b).astype(np.float32), b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        drop.add(id(bn))
    nodes = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {x for n in graph.node for x in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def node_models(models_dir, name):
    """One model per node of DIR/NAME.onnx, BatchNormalization folded first,
    into DIR/nodes-NAME/ with nodes.json: for timing byob node by node with
    nothing but its public session API (`onnx --profile NAME`)."""
    model = onnx.load(os.path.join(models_dir, f"{name}.onnx"))
    fold_batch_norms(model)
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    shapes = {v.name: dims(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    inits = {t.name: t for t in graph.initializer}
    uses = consumers(graph)
    out_dir = os.path.join(models_dir, f"nodes-{name}")
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for i, node in enumerate(graph.node):
        feeds = [x for x in node.input if x and x not in inits]
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, shapes[x]) for x in feeds]
        # Unused optional outputs (Dropout's mask) go.
        node = onnx.NodeProto()
        node.CopyFrom(graph.node[i])
        while len(node.output) > 1 and not uses.get(node.output[-1]) and node.output[-1] not in {o.name for o in graph.output}:
            node.output.pop()
        outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in node.output]
        sub = helper.make_graph([node], f"{name}_{i}", inputs, outputs, [inits[x] for x in node.input if x in inits])
        sub_model = helper.make_model(sub, opset_imports=list(model.opset_import))
        sub_model.ir_version = 4
        file = f"{i:03d}_{node.op_type}.onnx"
        onnx.save(sub_model, os.path.join(out_dir, file))
        out_shape = shapes[node.output[0]]
        flops = 0
        if node.op_type == "Conv":
            w = inits[node.input[1]].dims
            flops = 2 * int(np.prod(out_shape)) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            flops = 2 * int(np.prod(out_shape)) * shapes[node.input[0]][-1]
        # What ONNX Runtime may fuse into this node, for matching its
        # profile: the outputs of the Relu/Sum chain that follows it.
        chain, o = [], node.output[0]
        while node.op_type == "Conv" and len(uses.get(o, [])) == 1 and uses[o][0][0].op_type in ("Relu", "Sum", "Add"):
            o = uses[o][0][0].output[0]
            chain.append(o)
        entries.append(
            {
                "file": file,
                "op": node.op_type,
                "name": node.name,
                "output": node.output[0],
                "inputs": [{"name": x, "shape": shapes[x]} for x in feeds],
                "output_shape": out_shape,
                "weight_shape": list(inits[node.input[1]].dims) if node.op_type in ("Conv", "Gemm") else None,
                "flops": flops,
                "fused_outputs": chain,
            }
        )
    with open(os.path.join(out_dir, "nodes.json"), "w") as f:
        json.dump(entries, f, indent=1)
    print(f"{name}: {len(entries)} single-node models (BatchNormalization folded) -> {out_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "target/bench-models"))
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--nodes", metavar="NAME", help="only write one model per node of DIR/NAME.onnx (for `onnx --profile NAME`)")
    args = parser.parse_args()
    if args.nodes:
        return node_models(args.out, args.nodes)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    models = []
    builds = [
        ("resnet50", "ResNet50 (light_resnet50 architecture, random weights)", lambda: randomise("resnet50", rng)),
        ("squeezenet", "SqueezeNet 1.0 (light_squeezenet architecture, random weights)", lambda: randomise("squeezenet", rng)),
        ("shufflenet", "ShuffleNet (light_shufflenet architecture, random weights)", lambda: randomise("shufflenet", rng)),
        ("mlp", "MLP 784-1024-1024-1024-10, Gemm+Relu, batch 64", lambda: mlp(rng)),
    ]
    for name, description, build in builds:
        model = build()
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.save(model, path)
        (inp,) = model.graph.input
        (outp,) = model.graph.output
        shape = dims(inp)
        x = rng.normal(0.0, 1.0, shape).astype(np.float32)
        calibrate_logits(model, x)
        onnx.save(model, path)
        input_file = f"{name}.input.bin"
        x.astype("<f4").tofile(os.path.join(args.out, input_file))
        y = check(model, path, x)
        nodes = len(model.graph.node)
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        print(
            f"{name}: {nodes} nodes, {params / 1e6:.2f} M parameters, opset {model.opset_import[0].version}, "
            f"checker ok, ONNX Runtime output {list(y.shape)} range [{y.min():.3g}, {y.max():.3g}] -> {path}"
        )
        models.append(
            {
                "name": name,
                "description": description,
                "file": f"{name}.onnx",
                "input": {"name": inp.name, "shape": shape, "file": input_file},
                "output": outp.name,
                "nodes": nodes,
                "parameters": params,
            }
        )
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"seed": args.seed, "models": models}, f, indent=1)
    print(f"wrote {len(models)} models and manifest.json to {args.out}")


if __name__ == "__main__":
    sys.exit(main())

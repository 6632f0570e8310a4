#!/usr/bin/python3
"""Opens the files `custody export` wrote with the tools their users have, and checks that
each gives the answers `custody predict` gave (tests/integration/model_files_test.cc).

  check_model_files.py MODEL.onnx MODEL.safetensors MODEL.raw INPUT ROWS PREDICTIONS.json
                       [--http URL --model NAME [--token FILE]]

INPUT: IDX images (.idx, .gz), or a CSV table of raw feature rows (.csv, an optional header
row) for a model trained on a table, whose files standardize the rows themselves (ONNX: Sub
and Div nodes; safetensors: the metadata's standardize_mean and standardize_std).
ONNX: onnx.checker, then the graph evaluated node by node with NumPy (Mul, Sub, Div, Gemm,
Relu, Tanh, Softmax, and for models with image layers Reshape, Conv, MaxPool, Flatten: the
operators the exporter uses; any other is an error). safetensors: the header
parsed as the format's specification says, the tensors loaded by name and shape, and the
MLP computed from them. raw: the documented flat layout (layer l: weight out x in
column-major, then bias). With --http, the same raw values are also sent, with nothing but
`requests`, to the service's Open Inference Protocol route (POST URL/v2/models/NAME/infer),
and its model metadata must state the input contract (raw pixels 0 to 255 for an image
model, the columns for a table's). Each must match the predictions to 1e-5: one input
contract, whoever evaluates the model. Exits 0 when all do.
"""
import gzip
import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper

TOLERANCE = 1e-5


def read_idx_images(path, rows):
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    magic, count = struct.unpack(">II", data[:8])
    assert magic == 0x803, f"{path}: not IDX images"
    h, w = struct.unpack(">II", data[8:16])
    pixels = np.frombuffer(data[16:16 + rows * h * w], dtype=np.uint8)
    return pixels.reshape(rows, h * w).astype(np.float32)  # the raw values, as the ONNX graph takes them


def read_csv_rows(path, rows):
    """Raw feature rows, as `custody predict --input FILE.csv` reads them: a first row of
    names is a header."""
    out = []
    for line in open(path):
        cells = [c.strip() for c in line.strip().split(",")]
        if not line.strip():
            continue
        if not out and all(c[:1].isalpha() or c[:1] == "_" for c in cells):
            continue
        out.append([float(c) for c in cells])
    return np.array(out[:rows], dtype=np.float32)


def standardized(x, meta):
    """A table model's inputs from raw rows, in float32 as Custody computes them."""
    if "standardize_mean" not in meta:
        return x
    mean = np.array(json.loads(meta["standardize_mean"]), dtype=np.float32)
    std = np.array(json.loads(meta["standardize_std"]), dtype=np.float32)
    return ((x - mean) / std).astype(np.float32)


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def conv2d(x, w, b):
    """ONNX Conv with 'valid' padding and stride 1: x [N, C, H, W], w [F, C, k, k]."""
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    oh, ow = h - k + 1, wd - k + 1
    y = np.zeros((n, f, oh, ow), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i:i + oh, j:j + ow].astype(np.float64)  # [N, C, OH, OW]
            y += np.einsum("nchw,fc->nfhw", patch, w[:, :, i, j].astype(np.float64))
    return (y + b.reshape(1, f, 1, 1)).astype(np.float32)


def maxpool(x, s):
    n, c, h, w = x.shape
    oh, ow = h // s, w // s
    return x[:, :, :oh * s, :ow * s].reshape(n, c, oh, s, ow, s).max(axis=(3, 5))


def run_onnx(path, x):
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import] == [13], model.opset_import
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values[model.graph.input[0].name] = x
    for node in model.graph.node:
        a = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        i = [values[n] for n in node.input]
        if node.op_type == "Mul":
            y = i[0] * i[1]
        elif node.op_type == "Sub":
            y = i[0] - i[1]
        elif node.op_type == "Div":
            y = i[0] / i[1]
        elif node.op_type == "Gemm":
            b = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (i[0] @ b) + a.get("beta", 1.0) * i[2]
        elif node.op_type == "Relu":
            y = np.maximum(i[0], 0)
        elif node.op_type == "Tanh":
            y = np.tanh(i[0])
        elif node.op_type == "Reshape":
            y = i[0].reshape([int(d) for d in i[1]])
        elif node.op_type == "Conv":
            assert list(a.get("kernel_shape")) == list(i[1].shape[2:]), a
            assert not any(a.get("pads", [])) and set(a.get("strides", [1])) == {1}, a
            y = conv2d(i[0], i[1], i[2])
        elif node.op_type == "MaxPool":
            k = list(a["kernel_shape"])
            assert k[0] == k[1] and list(a["strides"]) == k, a
            y = maxpool(i[0], k[0])
        elif node.op_type == "Flatten":
            assert a.get("axis", 1) == 1
            y = i[0].reshape(i[0].shape[0], -1)
        elif node.op_type == "Softmax":
            assert a.get("axis") == 1
            y = softmax(i[0])
        else:
            raise SystemExit(f"unexpected ONNX operator {node.op_type}")
        values[node.output[0]] = y.astype(np.float32)
    meta = {p.key: p.value for p in model.metadata_props}
    return values[model.graph.output[0].name], meta


def mlp(layers, x, activation):
    for k, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if k + 1 < len(layers):
            x = np.maximum(x, 0) if activation == "relu" else np.tanh(x)
    return softmax(x)


def layered(arch, tensor, x, activation):
    """The model of an architecture text ("1x28x28 conv2d:32:3 maxpool:2 flatten dense:10",
    core/model.h), its tensors fetched by name as the files hold them."""
    words = arch.split()
    shape = [int(d) for d in words[0].split("x")]
    if len(shape) == 3:
        x = x.reshape(x.shape[0], *shape)
    act = (lambda z: np.maximum(z, 0)) if activation == "relu" else np.tanh
    layers = words[1:]
    for k, word in enumerate(layers):
        kind, *args = word.split(":")
        name = f"layer{k + 1}"
        last = k + 1 == len(layers)
        if kind == "conv2d":
            x = act(conv2d(x, tensor(name + ".weight", "conv2d", args), tensor(name + ".bias", "bias", args)))
        elif kind == "maxpool":
            x = maxpool(x, int(args[0]))
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "dense":
            x = x @ tensor(name + ".weight", "dense", [args[0], x.shape[1]]).T + tensor(name + ".bias", "bias", args)
            if not last:
                x = act(x)
        else:
            raise SystemExit(f"unknown layer {word}")
    return softmax(x)


def run_safetensors(path, x):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", t
        lo, hi = t["data_offsets"]
        tensors[name] = np.frombuffer(body[lo:hi], dtype="<f4").reshape(t["shape"])
    scale = float(meta["input_scale"])
    x = standardized(x, meta)
    if meta.get("architecture"):
        return layered(meta["architecture"], lambda name, *_: tensors[name], x * np.float32(scale),
                       meta["hidden_activation"]), meta
    layers, k = [], 1
    while f"layer{k}.weight" in tensors:
        layers.append((tensors[f"layer{k}.weight"], tensors[f"layer{k}.bias"]))
        k += 1
    scale = float(meta["input_scale"])
    return mlp(layers, x * np.float32(scale), meta["hidden_activation"]), meta


def run_raw(path, x, sizes, scale, activation, arch="", meta=None):
    x = standardized(x, meta or {})
    flat = np.fromfile(path, dtype="<f4")
    if arch:
        # The flat layout: a conv weight [F, C, k, k] row-major, a dense one out x in
        # column-major, each followed by its bias, layer by layer.
        at = [0]
        channels = [int(arch.split()[0].split("x")[0])]

        def take(name, kind, args):
            if kind == "conv2d":
                f, k = int(args[0]), int(args[1])
                n, shape = f * channels[0] * k * k, (f, channels[0], k, k)
                channels[0] = f
            elif kind == "dense":
                o, i = int(args[0]), int(args[1])
                n, shape = o * i, None
            else:
                n, shape = int(args[0]), (int(args[0]),)
            v = flat[at[0]:at[0] + n]
            at[0] += n
            return v.reshape(int(args[1]), int(args[0])).T if shape is None else v.reshape(shape)

        probs = layered(arch, take, x * np.float32(scale), activation)
        assert at[0] == flat.size, (at[0], flat.size)
        return probs
    layers, off = [], 0
    for i, o in zip(sizes[:-1], sizes[1:]):
        w = flat[off:off + i * o].reshape(i, o).T  # out x in, column-major
        off += i * o
        layers.append((w, flat[off:off + o]))
        off += o
    assert off == flat.size, (off, flat.size)
    return mlp(layers, x * np.float32(scale), activation)


def run_http(url, model, token, x, images):
    """The raw rows through the service's OIP route, as a user's requests client sends them."""
    import requests  # only here: the file checks need no HTTP client
    headers = {"Authorization": "Bearer " + open(token).read().strip()} if token else {}
    meta = requests.get(url + "/v2/models/" + model, headers=headers, timeout=30)
    assert meta.status_code == 200, (meta.status_code, meta.text)
    contract = meta.json()["inputs"][0]["parameters"]
    if images.endswith(".csv"):
        assert "columns" in contract and "range" not in contract, contract
    else:
        assert contract["range"] == [0, 255] and "raw pixel values 0 to 255" in contract["expects"], contract
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    r = requests.post(url + "/v2/models/" + model + "/infer", json={"inputs": [tensor]}, headers=headers,
                      timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    out = r.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def main():
    args, flags = sys.argv[1:7], sys.argv[7:]
    onnx_path, st_path, raw_path, images, rows, predictions = args
    opts = dict(zip(flags[::2], flags[1::2]))
    rows = int(rows)
    x = read_csv_rows(images, rows) if images.endswith(".csv") else read_idx_images(images, rows)
    expected = np.array([p["probabilities"] for p in json.load(open(predictions))], dtype=np.float32)
    assert expected.shape[0] == rows, expected.shape
    failures = 0
    got, onnx_meta = run_onnx(onnx_path, x)
    st, st_meta = run_safetensors(st_path, x)
    sizes = json.loads(st_meta["layer_sizes"])
    raw = run_raw(raw_path, x, sizes, float(st_meta["input_scale"]), st_meta["hidden_activation"],
                  st_meta.get("architecture", ""), st_meta)
    answers = [("onnx", got), ("safetensors", st), ("raw", raw)]
    if "--http" in opts:
        answers.append(("http", run_http(opts["--http"], opts["--model"], opts.get("--token"), x, images)))
    for name, probs in answers:
        worst = float(np.abs(probs - expected).max())
        ok = worst <= TOLERANCE and (probs.argmax(1) == expected.argmax(1)).all()
        print(f"{name}: largest difference from custody predict {worst:.2e} over {rows} rows "
              f"({'ok' if ok else 'FAILED'})")
        failures += not ok
    if onnx_meta.get("custody_root_hash") != st_meta.get("custody_root_hash"):
        print("the ONNX and safetensors files name different checkpoints")
        failures += 1
    print(json.dumps({"root_hash": onnx_meta.get("custody_root_hash"), "layer_sizes": sizes}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The Flask pattern the seeds' serving example follows, over the same model as Custody
serves: POST /predict {"instances": [[...], ...]} -> {"predictions": [{"class",
"probabilities"}]}, a NumPy forward pass of the MLP exported by `custody export` (raw
float32, Custody's layout: per layer W (out x in, column-major) then b) on raw pixel
values 0 to 255, scaled by 1/255 in float32 as Custody's service scales them
(core/input_contract.h). No recording, no authentication: the peer bench/http_serving.sh
measures Custody's HTTP path against.

  flask_server.py WEIGHTS.f32 PORT 784,256,128,10
"""
import sys

import numpy as np
from flask import Flask, jsonify, request


def load(path, sizes):
    flat = np.fromfile(path, dtype="<f4")
    layers, at = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = flat[at:at + n_out * n_in].reshape((n_in, n_out)).T  # column-major out x in
        at += n_out * n_in
        b = flat[at:at + n_out]
        at += n_out
        layers.append((w, b))
    if at != flat.size:
        sys.exit("the weights hold %d floats, the layer sizes %d" % (flat.size, at))
    return layers


def main():
    weights, port, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
    layers = load(weights, sizes)
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        x = np.asarray(request.get_json()["instances"], dtype=np.float32) * np.float32(1.0 / 255.0)
        for i, (w, b) in enumerate(layers):
            x = x @ w.T + b
            if i + 1 < len(layers):
                x = np.maximum(x, 0)
        x = np.exp(x - x.max(axis=1, keepdims=True))
        p = x / x.sum(axis=1, keepdims=True)
        return jsonify(predictions=[{"class": int(r.argmax()), "probabilities": r.tolist()} for r in p])

    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()

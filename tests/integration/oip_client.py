#!/usr/bin/env python3
"""A user's client of Custody's HTTP serving, with nothing but `requests`.

  oip_client.py URL MODEL ROWS.csv [--token FILE] [--cacert PEM] [--flask]

Sends the rows (CSV, one row a line) to POST URL/v2/models/MODEL/infer as an Open
Inference Protocol FP32 tensor (or, with --flask, to POST URL/predict as instances) and
prints one JSON object: {"status": HTTP status, "body": the response's JSON}.
"""
import argparse
import json
import sys

import requests


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("model")
    p.add_argument("rows")
    p.add_argument("--token")
    p.add_argument("--cacert")
    p.add_argument("--flask", action="store_true")
    a = p.parse_args()
    with open(a.rows) as f:
        rows = [[float(v) for v in line.split(",")] for line in f if line.strip()]
    headers = {}
    if a.token:
        with open(a.token) as f:
            headers["Authorization"] = "Bearer " + f.read().strip()
    verify = a.cacert if a.cacert else True
    if a.flask:
        r = requests.post(a.url + "/predict", json={"model": a.model, "instances": rows}, headers=headers,
                          verify=verify, timeout=30)
    else:
        tensor = {"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                  "data": [v for row in rows for v in row]}
        r = requests.post(a.url + "/v2/models/" + a.model + "/infer", json={"id": "py-1", "inputs": [tensor]},
                          headers=headers, verify=verify, timeout=30)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    print(json.dumps({"status": r.status_code, "body": body}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load a recurrent model trained by Backprop into PyTorch and score it on the MNIST test set.

    /tmp/torchenv/bin/python scripts/check-torch-load.py MODEL.safetensors [--data data/mnist]
                                                         [--expect ACCURACY]

The module is the one a PyTorch user writes (`class Seq` below: nn.LSTM / nn.GRU / nn.RNN with
batch_first=True, then nn.Linear on the last step's output). The cell, hidden size, layers and
classes come from the file's `backprop.architecture` metadata; the weights load with
`load_state_dict(strict=True)`, so every name and shape must match PyTorch's state_dict exactly.
Inputs are pixel/255 as float32, each image 28 steps of 28 pixels (Backprop's `.sequence` batch
layout). Prints the accuracy and the accuracy Backprop recorded in the file
(`backprop.test_accuracy`); with --expect (or by default, when the file records one) exits 1 if
they differ by more than 0.0002 (2 of 10000 images: float rounding can flip a near-tie).
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path):
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                data = f.read()
            break
    else:
        raise SystemExit(f"{path}[.gz] not found")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)


class Seq(torch.nn.Module):
    def __init__(self, kind, features, hidden, layers, classes):
        super().__init__()
        cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=True)
        self.fc = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "mnist"))
    ap.add_argument("--expect", type=float, default=None, help="accuracy to match (default: the file's own)")
    args = ap.parse_args()

    with safe_open(args.model, framework="pt") as f:
        meta = f.metadata() or {}
    arch = json.loads(meta.get("backprop.architecture", "{}"))
    kind = arch.get("arch") or arch.get("kind")
    if kind not in ("lstm", "gru", "rnn"):
        raise SystemExit(f"{args.model}: not a recurrent Backprop model (metadata: {meta.get('backprop.architecture')})")
    state = load_file(args.model)
    hidden = state["rnn.weight_hh_l0"].shape[1]
    layers = sum(1 for k in state if k.startswith("rnn.weight_hh_l"))
    features = state["rnn.weight_ih_l0"].shape[1]
    classes = state["fc.weight"].shape[0]
    model = Seq(kind, features, hidden, layers, classes)
    model.load_state_dict(state, strict=True)
    model.eval()

    dims, pixels = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte"))
    _, labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte"))
    n, rows, cols = dims[0], dims[1], dims[2]
    x = torch.from_numpy(pixels[:n * rows * cols].reshape(n, rows, cols).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels[:n].astype(np.int64))
    with torch.no_grad():
        predictions = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, n, 1000)])
    accuracy = (predictions == y).float().mean().item()
    print(f"{args.model}: {kind.upper()}({features} -> {hidden}, {layers} layer(s)) -> Linear({hidden}, {classes}) "
          f"loaded into PyTorch {torch.__version__} with strict=True")
    print(f"PyTorch test accuracy {accuracy * 100:.2f}% ({int(round(accuracy * n))}/{n})")
    recorded = args.expect if args.expect is not None else (
        float(meta["backprop.test_accuracy"]) if "backprop.test_accuracy" in meta else None)
    if recorded is not None:
        print(f"Backprop's accuracy  {recorded * 100:.2f}%   difference {abs(accuracy - recorded) * 100:.3f} points")
        if abs(accuracy - recorded) > 0.0002:
            print("MISMATCH", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

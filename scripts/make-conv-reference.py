#!/usr/bin/env python3
"""Reference fixtures from PyTorch for Tests/BackpropTests/ConvReferenceTests.swift.

Run (from anywhere, with a Python that has torch, numpy and safetensors):

    /tmp/torchenv/bin/python scripts/make-conv-reference.py

It rewrites Tests/BackpropTests/Fixtures/conv_ref_cnn.safetensors, conv_ref_residual.safetensors
and conv_ref_rows.safetensors.
Deterministic (fixed seeds); rerunning it must leave `git status` clean.

Networks (training mode, cross-entropy on integer labels, mean over the batch):
  cnn       0 Conv2d(2, 4, (3, 2), padding=1)  1 ReLU  2 MaxPool2d(2)  3 BatchNorm2d(4)
            4 Flatten  5 Linear(48, 3)                      input [5, 2, 8, 6], 3 classes
  residual  0 Conv2d(2, 3, 3, padding=1)
            1 Residual(Sequential(Conv2d(3, 3, 3, padding=1, bias=False), BatchNorm2d(3), ReLU,
                                  Conv2d(3, 3, 3, padding=1, bias=False), BatchNorm2d(3)))
            2 ReLU  3 AvgPool2d(2)  4 Flatten  5 Linear(27, 4)   input [4, 2, 6, 6], 4 classes
  rows      0 Conv2d(1, 4, 3, padding=1)  1 ReLU  2 Conv2d(4, 5, (5, 4), padding=(2, 1))
            3 BatchNorm2d(5)  4 ReLU  5 MaxPool2d(2)  6 Flatten  7 Linear(60, 3)
                                                            input [3, 1, 9, 7], 3 classes
            (layer 2 has stride 1 and C·kw = 16: Backprop runs it through its row lowering)

Each file (safetensors.numpy, float32 unless noted):
    <name>            every parameter under its state_dict name (BatchNorm weight/bias randomised)
    input, target     the batch; target as float32 class indices (exact small integers)
    loss              shape []
    grad.<name>       d loss / d parameter;  grad.input: d loss / d input
    after.<name>      running_mean / running_var / num_batches_tracked after the training forward
    eval.output       logits of the same batch in eval mode, using those running statistics
    __metadata__      {"reference": JSON with network, torch version, seed, input_shape, classes}
The computation runs in float64 on the float32-rounded weights and batch, so the stored numbers
are the exact answer rounded once to float32.
"""
import json
import os

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "BackpropTests", "Fixtures")
nn = torch.nn


class Residual(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


def cnn():
    return nn.Sequential(nn.Conv2d(2, 4, (3, 2), padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(48, 3)), (5, 2, 8, 6), 3


def residual():
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3))
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), Residual(block), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(27, 4)), (4, 2, 6, 6), 4


def rows():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, (5, 4), padding=(2, 1)),
                         nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(60, 3)), (3, 1, 9, 7), 3


def make(name, build, seed):
    torch.manual_seed(seed)
    model, shape, classes = build()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):   # non-trivial affine parameters
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        for p in model.parameters():                 # round once to float32
            p.copy_(p.float())
    x32 = torch.randn(shape, dtype=torch.float32)
    target = torch.randint(0, classes, (shape[0],))
    model = model.double().train()
    params = {k: v.detach().float().numpy().copy() for k, v in model.named_parameters()}

    x = x32.double().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()

    out = dict(params)
    out["input"] = x32.numpy()
    out["target"] = target.numpy().astype(np.float32)
    out["loss"] = np.array(loss.item(), dtype=np.float32)
    out["grad.input"] = x.grad.float().numpy()
    for k, v in model.named_parameters():
        out["grad." + k] = v.grad.float().numpy()
    for k, v in model.named_buffers():
        out["after." + k] = v.detach().float().numpy().reshape(v.shape)
    model.eval()
    with torch.no_grad():
        out["eval.output"] = model(x32.double()).float().numpy()
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    # One metadata key: safetensors writes the metadata map in hash order, so several keys
    # would make the file bytes differ from run to run.
    meta = {"reference": json.dumps({"network": name, "torch": torch.__version__, "seed": seed,
                                     "input_shape": list(shape), "classes": classes}, sort_keys=True)}
    save_file(out, os.path.join(OUT, f"conv_ref_{name}.safetensors"), metadata=meta)
    print(f"conv_ref_{name}: loss {loss.item():.6f}, {len(out)} tensors")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    make("cnn", cnn, 1)
    make("residual", residual, 2)
    make("rows", rows, 3)

#!/usr/bin/env python3
"""Reference fixtures from PyTorch for Tests/BackpropTests/ReferenceTests.swift.

Run (from the repository root, with a Python that has torch, numpy and safetensors):

    /tmp/torchenv/bin/python scripts/make-reference.py

It rewrites Tests/BackpropTests/Fixtures/ref_*.safetensors. The output is deterministic
(fixed seeds); a file whose tensors and metadata are unchanged is not rewritten, so rerunning it
leaves `git status` clean.

Each file is written by `safetensors.numpy.save_file`, all tensors float32 except integer class
labels (int64, as PyTorch's CrossEntropyLoss takes them).

Networks (ref_net_<activation>_<loss>.safetensors, ref_net_residual_<loss>.safetensors):
    weights     PyTorch Sequential state_dict names: 0.weight, 0.bias, 2.weight, …
                (residual: 0.*, 1.block.0.*, 1.block.2.*, 2.*)
    input       the batch [N, in];  target: int64 [N] (cross-entropy) or float32 [N, out]
    loss        the loss value (shape [])
    grad.<name> d loss / d parameter for every parameter;  grad.input: d loss / d input
    __metadata__  architecture (JSON list of layers), loss, label_smoothing, torch version
The forward/backward runs in float64 on the float32-rounded weights and batch, so the stored
numbers are the exact answer rounded once to float32.

Optimizers (ref_optim_<case>.safetensors): two parameters `w` [3, 4] and `b` [4],
    init.w, init.b                 starting values
    grad scale per step 1, 3, 0.5, 0.2, 1.5 (adam_amsgrad: 5, 0.1, 0.1, 0.1, 0.1, see below)
    grad.<k>.w, grad.<k>.b         the gradient set before step k (k = 0 … steps−1)
    param.<k>.w, param.<k>.b       the parameters after step k
    __metadata__  optimizer (SGD | Adam | AdamW | RMSprop), steps, and its hyper-parameters
computed by torch.optim itself (float64, as above).
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "BackpropTests", "Fixtures")


class Residual(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


ACTIVATIONS = {
    "relu": (lambda: torch.nn.ReLU(), {"type": "ReLU"}),
    "leaky_relu": (lambda: torch.nn.LeakyReLU(0.01), {"type": "LeakyReLU", "negative_slope": 0.01}),
    "sigmoid": (lambda: torch.nn.Sigmoid(), {"type": "Sigmoid"}),
    "tanh": (lambda: torch.nn.Tanh(), {"type": "Tanh"}),
    "gelu": (lambda: torch.nn.GELU(approximate="none"), {"type": "GELU", "approximate": "none"}),
}
LOSSES = ["cross_entropy", "cross_entropy_smooth", "mse", "bce_with_logits"]


def save(tensors, path, metadata):
    """save_file, but leave an existing file alone when its tensors and metadata are the same
    (safetensors orders __metadata__ keys from a hash map, so the bytes vary between runs)."""
    if os.path.exists(path):
        old = load_file(path)
        with safe_open(path, "np") as f:
            old_metadata = f.metadata()
        if (old_metadata == metadata and old.keys() == tensors.keys()
                and all(old[k].dtype == tensors[k].dtype and old[k].shape == tensors[k].shape
                        and np.array_equal(old[k], tensors[k]) for k in tensors)):
            return
    save_file(tensors, path, metadata=metadata)


def f32(t):
    """float32-rounded copy, as float64 for computing."""
    return t.to(torch.float32).to(torch.float64)


def linear(i, o):
    return torch.nn.Linear(i, o).to(torch.float64)


def arch_of(model):
    out = []
    for m in model:
        if isinstance(m, torch.nn.Linear):
            out.append({"type": "Linear", "in": m.in_features, "out": m.out_features})
        elif isinstance(m, Residual):
            out.append({"type": "Residual", "block": arch_of(m.block)})
        else:
            for name, (_, desc) in ACTIVATIONS.items():
                if type(m) is type(ACTIVATIONS[name][0]()):
                    out.append(desc)
                    break
            else:
                raise ValueError(m)
    return out


def make_network(name, model, n, n_in, n_out, loss_name, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(f32(p))                 # weights exactly representable in float32
    x = f32(torch.randn(n, n_in, generator=g, dtype=torch.float64) * 1.5)

    # Keep pre-activations away from kinks (ReLU/LeakyReLU at 0) so float32 and float64 agree.
    with torch.no_grad():
        h = x
        for m in model:
            if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU)):
                if h.abs().min() < 1e-3:
                    return None
            h = m(h)

    x.requires_grad_(True)
    logits = model(x)
    smoothing = 0.0
    if loss_name.startswith("cross_entropy"):
        target = torch.randint(0, n_out, (n,), generator=g)
        smoothing = 0.1 if loss_name == "cross_entropy_smooth" else 0.0
        loss = torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing)
        target_np = target.numpy().astype(np.int64)
    elif loss_name == "mse":
        target = f32(torch.randn(n, n_out, generator=g, dtype=torch.float64))
        loss = torch.nn.functional.mse_loss(logits, target)
        target_np = target.numpy().astype(np.float32)
    else:
        target = (torch.rand(n, n_out, generator=g, dtype=torch.float64) > 0.5).to(torch.float64)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        target_np = target.numpy().astype(np.float32)
    loss.backward()

    tensors = {}
    for pname, p in model.named_parameters():
        tensors[pname] = p.detach().numpy().astype(np.float32)
        tensors["grad." + pname] = p.grad.numpy().astype(np.float32)
    tensors["input"] = x.detach().numpy().astype(np.float32)
    tensors["grad.input"] = x.grad.numpy().astype(np.float32)
    tensors["target"] = target_np
    tensors["loss"] = np.array(loss.item(), dtype=np.float32)
    loss_kind = {"cross_entropy": "SoftmaxCrossEntropy", "cross_entropy_smooth": "SoftmaxCrossEntropy",
                 "mse": "MeanSquaredError", "bce_with_logits": "BinaryCrossEntropyWithLogits"}[loss_name]
    metadata = {
        "architecture": json.dumps(arch_of(model)),
        "loss": loss_kind,
        "label_smoothing": repr(smoothing),
        "reduction": "mean",
        "generator": "scripts/make-reference.py, torch " + torch.__version__,
    }
    save(tensors, os.path.join(OUT, f"ref_net_{name}.safetensors"), metadata)
    return loss.item()


def networks():
    count = 0
    for ai, (act, (make_act, _)) in enumerate(ACTIVATIONS.items()):
        for li, loss_name in enumerate(LOSSES):
            k = ai * len(LOSSES) + li
            n, n_in, hidden, n_out = 4 + k % 3, 5 + k % 3, 3 + (k * 5) % 6, 3 + k % 3
            seed = 1000 + k
            while True:
                torch.manual_seed(seed)
                model = torch.nn.Sequential(linear(n_in, hidden), make_act(), linear(hidden, n_out))
                if make_network(f"{act}_{loss_name}", model, n, n_in, n_out, loss_name, seed) is not None:
                    break
                seed += 100
            count += 1
    for li, loss_name in enumerate(LOSSES):
        n, n_in, d, hidden, n_out = 5 + li % 2, 7 - li % 3, 5, 8 - li, 3 + li % 2
        torch.manual_seed(2000 + li)
        model = torch.nn.Sequential(
            linear(n_in, d),
            Residual(torch.nn.Sequential(linear(d, hidden), torch.nn.Tanh(), linear(hidden, d))),
            linear(d, n_out))
        make_network(f"residual_{loss_name}", model, n, n_in, n_out, loss_name, 2000 + li)
        count += 1
    return count


OPTIMIZERS = {
    "sgd_plain": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_dampening": ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam_default": ("Adam", dict(lr=0.01)),
    "adam_weight_decay": ("Adam", dict(lr=0.01, weight_decay=0.01)),
    # A large first gradient then small ones, and beta2 = 0.99: the second moment shrinks, so
    # amsgrad's running max differs from plain Adam in every element (by 1.6e-3 to 2.2e-3).
    "adam_amsgrad": ("Adam", dict(lr=0.1, betas=(0.9, 0.99), amsgrad=True), [5.0, 0.1, 0.1, 0.1, 0.1]),
    "adamw_default": ("AdamW", dict(lr=0.01)),
    "rmsprop_default": ("RMSprop", dict(lr=0.01)),
    "rmsprop_momentum": ("RMSprop", dict(lr=0.01, momentum=0.9)),
    "rmsprop_centered": ("RMSprop", dict(lr=0.01, centered=True)),
}


def optimizers():
    steps = 5
    for k, (case, spec) in enumerate(OPTIMIZERS.items()):
        kind, kwargs = spec[0], spec[1]
        scales = spec[2] if len(spec) > 2 else [1.0, 3.0, 0.5, 0.2, 1.5]   # gradient size per step
        g = torch.Generator().manual_seed(3000 + k)
        w = torch.nn.Parameter(f32(torch.randn(3, 4, generator=g, dtype=torch.float64)))
        b = torch.nn.Parameter(f32(torch.randn(4, generator=g, dtype=torch.float64)))
        tensors = {"init.w": w.detach().numpy().astype(np.float32),
                   "init.b": b.detach().numpy().astype(np.float32)}
        opt = getattr(torch.optim, kind)([w, b], **kwargs)
        full = {k2: v for k2, v in opt.defaults.items()
                if k2 in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "betas", "eps",
                          "amsgrad", "alpha", "centered")}
        for s in range(steps):
            w.grad = f32(torch.randn(3, 4, generator=g, dtype=torch.float64) * scales[s])
            b.grad = f32(torch.randn(4, generator=g, dtype=torch.float64) * scales[s])
            tensors[f"grad.{s}.w"] = w.grad.numpy().astype(np.float32)
            tensors[f"grad.{s}.b"] = b.grad.numpy().astype(np.float32)
            opt.step()
            tensors[f"param.{s}.w"] = w.detach().numpy().astype(np.float32)
            tensors[f"param.{s}.b"] = b.detach().numpy().astype(np.float32)
        metadata = {"optimizer": kind, "steps": str(steps),
                    "generator": "scripts/make-reference.py, torch " + torch.__version__}
        for key, value in full.items():
            metadata[key] = json.dumps(list(value) if isinstance(value, tuple) else value)
        save(tensors, os.path.join(OUT, f"ref_optim_{case}.safetensors"), metadata)
    return len(OPTIMIZERS)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    nets = networks()
    opts = optimizers()
    print(f"wrote {nets} network and {opts} optimizer fixtures to {os.path.normpath(OUT)}", file=sys.stderr)

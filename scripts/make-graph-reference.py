#!/usr/bin/env python3
"""Writes Tests/BackpropTests/Fixtures/graph_reference.json: random expression graphs over the
graph's ops (random shapes, row/column/scalar broadcasting, leaves used more than once), their
loss and every leaf's gradient from torch.autograd.

The leaves are drawn in float32 and stored exactly; PyTorch then evaluates the same program in
float64, so the reference carries no float32 rounding of its own and the Swift test
(GraphReferenceTests) measures our float32 graph against the exact answer.

    /work/venv/bin/python scripts/make-graph-reference.py        # needs torch and numpy

Each case: leaves (name, shape, values, requiresGrad), ops (out, op, args and attributes), the
name of the final one-element value, its value and the gradient of every leaf that requires grad.
"""
import json
import math
import os
import random

import numpy as np
import torch

CASES = 60
OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "BackpropTests", "Fixtures", "graph_reference.json")


class Program:
    def __init__(self, rng):
        self.rng = rng
        self.leaves = []      # dicts written to JSON
        self.ops = []
        self.values = {}      # name -> float64 torch tensor (leaves require grad where asked)
        self.order = []       # names in creation order
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def leaf(self, shape, low=-1.5, high=1.5, requires_grad=True, positive=False, away=0.1):
        vals = np.array([self.rng.uniform(low, high) for _ in range(int(np.prod(shape)) if shape else 1)], dtype=np.float32)
        if positive:
            vals = np.abs(vals) + np.float32(0.3)
        else:   # keep |x| ≥ away so kinks (relu) and divisions stay well conditioned
            vals = np.where(np.abs(vals) < away, np.sign(vals + 1e-9) * away, vals).astype(np.float32)
        n = self.name("x")
        t = torch.tensor(vals.astype(np.float64)).reshape(shape)
        t.requires_grad_(requires_grad)
        self.leaves.append({"name": n, "shape": list(shape), "values": [float(v) for v in vals], "requiresGrad": requires_grad})
        self.values[n] = t
        self.order.append(n)
        return n

    def op(self, op, args, value, **attrs):
        n = self.name("v")
        entry = {"out": n, "op": op, "args": args}
        entry.update(attrs)
        self.ops.append(entry)
        self.values[n] = value
        self.order.append(n)
        return n

    def pick(self, pred=lambda t: True):
        names = [n for n in self.order if pred(self.values[n])]
        return self.rng.choice(names) if names else None


def rank2(t):
    return t.dim() == 2


def well_conditioned(t, lo=0.2):
    return bool((t.detach().abs() > lo).all())


def random_step(p):
    r = p.rng
    kind = r.choice(["unary", "unary", "binary", "binary", "broadcast", "matmul", "reduce", "softmax",
                     "shape", "rows", "concat"])
    x = p.pick(rank2)
    X = p.values[x]
    N, F = X.shape
    if kind == "unary":
        choice = r.choice(["exp", "log", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "neg", "scalar"])
        if choice == "exp":
            if X.detach().abs().max() > 4:
                return
            p.op("exp", [x], torch.exp(X))
        elif choice == "log":
            if not bool((X.detach() > 0.2).all()):
                # log of a positive function of x instead: sigmoid keeps it in (0, 1)
                s = p.op("sigmoid", [x], torch.sigmoid(X))
                p.op("log", [s], torch.log(p.values[s]))
            else:
                p.op("log", [x], torch.log(X))
        elif choice == "tanh":
            p.op("tanh", [x], torch.tanh(X))
        elif choice == "sigmoid":
            p.op("sigmoid", [x], torch.sigmoid(X))
        elif choice == "relu":
            if not well_conditioned(X, 1e-3):
                return
            p.op("relu", [x], torch.relu(X))
        elif choice == "gelu":
            p.op("gelu", [x], torch.nn.functional.gelu(X))
        elif choice == "gelu_tanh":
            p.op("gelu", [x], torch.nn.functional.gelu(X, approximate="tanh"), approximate="tanh")
        elif choice == "neg":
            p.op("neg", [x], -X)
        else:
            c = round(r.uniform(-2, 2), 3) or 0.5
            form = r.choice(["add", "sub", "mul", "div", "rsub", "rdiv"])
            if form == "add":
                v = X + c
            elif form == "sub":
                v = X - c
            elif form == "mul":
                v = X * c
            elif form == "div":
                v = X / c
            elif form == "rsub":
                v = c - X
            else:
                if not well_conditioned(X, 0.3):
                    return
                v = c / X
            p.op("scalar", [x], v, form=form, constant=float(np.float32(c)))
    elif kind in ("binary", "broadcast"):
        op = r.choice(["add", "sub", "mul", "div"])
        if kind == "binary":
            shape = [N, F]
        else:
            shape = r.choice([[F], [1, F], [N, 1], [], [1]])
        y = p.pick(lambda t: list(t.shape) == shape)
        if y is None or r.random() < 0.3:
            y = p.leaf(shape, positive=(op == "div"))
        Y = p.values[y]
        a, b = (x, y) if r.random() < 0.7 or op == "div" else (y, x)
        A, B = p.values[a], p.values[b]
        if op == "div" and not well_conditioned(B, 0.3):
            return
        v = {"add": A + B, "sub": A - B, "mul": A * B, "div": A / B}[op]
        p.op(op, [a, b], v)
    elif kind == "matmul":
        M = r.randint(1, 5)
        w = p.pick(lambda t: rank2(t) and t.shape[0] == F)
        if w is None or r.random() < 0.5:
            w = p.leaf([F, M], low=-1, high=1)
        p.op("matmul", [x, w], X @ p.values[w])
    elif kind == "reduce":
        op = r.choice(["sum", "mean"])
        axis = r.choice([0, 1])
        keep = r.random() < 0.5
        fn = torch.sum if op == "sum" else torch.mean
        v = fn(X, dim=axis, keepdim=keep)
        if not keep:
            return  # rank 1 ends the chain's usefulness; keep the value 2-d
        p.op(op, [x], v, axis=axis, keepDim=keep)
    elif kind == "softmax":
        op = r.choice(["softmax", "logSoftmax"])
        axis = r.choice([-1, 0, 1])
        fn = torch.softmax if op == "softmax" else torch.log_softmax
        p.op(op, [x], fn(X, dim=axis), axis=axis)
    elif kind == "shape":
        if r.random() < 0.5:
            p.op("transpose", [x], X.t())
        else:
            shape = r.choice([[F, N], [1, N * F], [N * F, 1]])
            p.op("reshape", [x], X.reshape(shape), shape=shape)
    elif kind == "rows":
        if N < 2:
            return
        a = r.randint(0, N - 1)
        b = r.randint(a + 1, N)
        p.op("rows", [x], X[a:b], range=[a, b])
    elif kind == "concat":
        axis = r.choice([0, 1])
        y = p.pick(lambda t: rank2(t) and t.shape[1 - axis] == X.shape[1 - axis])
        if y is None or r.random() < 0.3:
            shape = [r.randint(1, 4), F] if axis == 0 else [N, r.randint(1, 4)]
            y = p.leaf(shape)
        args = [x, y] if r.random() < 0.5 else [y, x]
        p.op("concat", args, torch.cat([p.values[a] for a in args], dim=axis), axis=axis)


def finish(p):
    """Reduces the last 2-d value to one element: a weighted sum, a mean, cross-entropy or MSE."""
    r = p.rng
    last = [n for n in p.order if n.startswith("v") and rank2(p.values[n])]
    x = last[-1] if last else p.pick(rank2)
    X = p.values[x]
    N, C = X.shape
    kind = r.choice(["weighted", "mean", "crossEntropy", "crossEntropySum", "mse"])
    if kind == "weighted":
        w = p.leaf([N, C], requires_grad=False)
        prod = p.op("mul", [x, w], X * p.values[w])
        return p.op("sum", [prod], p.values[prod].sum())
    if kind == "mean":
        return p.op("mean", [x], X.mean())
    if kind.startswith("crossEntropy"):
        labels = [r.randrange(C) for _ in range(N)]
        reduction = "sum" if kind.endswith("Sum") else "mean"
        v = torch.nn.functional.cross_entropy(X, torch.tensor(labels), reduction=reduction)
        return p.op("crossEntropy", [x], v, labels=labels, reduction=reduction)
    target = p.leaf([N, C], requires_grad=r.random() < 0.5)
    return p.op("mse", [x, target], torch.nn.functional.mse_loss(X, p.values[target]))


def make_case(seed):
    rng = random.Random(seed)
    p = Program(rng)
    N, F = rng.randint(1, 5), rng.randint(1, 5)
    p.leaf([N, F])
    if rng.random() < 0.5:
        p.leaf([N, F])
    steps = rng.randint(4, 9)
    while len(p.ops) < steps:
        random_step(p)
    result = finish(p)
    loss = p.values[result]
    loss.backward()
    grads = {}
    for leaf in p.leaves:
        if leaf["requiresGrad"]:
            g = p.values[leaf["name"]].grad
            grads[leaf["name"]] = [float(v) for v in (g.reshape(-1) if g is not None else torch.zeros(max(1, int(np.prod(leaf["shape"])))))]
    ops_used = sorted({o["op"] for o in p.ops})
    return {"seed": seed, "leaves": p.leaves, "ops": p.ops, "result": result, "loss": float(loss.detach()), "grads": grads,
            "opsUsed": ops_used}


def main():
    torch.manual_seed(0)
    cases = [make_case(seed) for seed in range(CASES)]
    used = sorted({op for c in cases for op in c["opsUsed"]})
    doc = {"about": "random expression graphs with torch.autograd's float64 values and gradients "
                    "(scripts/make-graph-reference.py, torch " + torch.__version__ + ")",
           "opsCovered": used, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases covering {len(used)} ops: {', '.join(used)} -> {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()

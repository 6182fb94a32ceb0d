#!/usr/bin/env python3
"""Reads the event files of `backprop train --tensorboard DIR` with the `tensorboard` package
(its EventAccumulator; no TensorFlow) and checks them against what the run printed and wrote.

    .venv/bin/python scripts/check-tensorboard.py [--backprop .build/debug/backprop]
                                                  [--data data/mnist] [--work DIR]

Needs the `tensorboard` package (and numpy, which it installs). Runs, on the first training
images of --data:
  mlp      3 epochs, --log-every 7: every tag and step; each epoch's scalars equal (as float32,
           the type of TensorBoard's simple_value) to the numbers of that epoch's --json line,
           grad_norm/<name> to its gradient_norms; loss/step and grad_norm/total at every 7th
           step; weight/<name> and grad/<name> histograms every epoch with num = parameter
           count, counts summing to num, edges increasing; the last epoch's weight histograms
           bin for bin equal to the histogram (PyTorch's algorithm, re-done here with numpy) of
           the tensors in the model file; the graph's Parameter nodes are the model file's
           tensors with their shapes, its layer nodes the MLP's layers; the flags text.
  resume   2 epochs, then --resume to 3: two event files in one directory, one series per tag
           with steps 1, 2, 3, each equal to its --json line; step counters continue.
  kill     a run killed (SIGKILL) after its first epoch line: its files read, epoch 1 complete;
           a copy cut in the middle of its last record reads up to the record before.
  lstm     2 epochs of a small LSTM: hidden_grad_norm/t01…t28 every epoch; the last equal to
           `backprop grads --json`'s hidden_gradient_norms of the model file on the same batch.
  refuse   --tensorboard naming a file, or a folder under /proc: exit status ≠ 0, a message
           naming the path, no epoch line.
Exit status 0 when every check passes; each failure is printed.
"""
import argparse
import gzip
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURES = []
CHECKS = [0]


def check(condition, message):
    CHECKS[0] += 1
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, flush=True)
    return condition


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load(logdir):
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0,
                                                     ea.COMPRESSED_HISTOGRAMS: 0, ea.GRAPH: 0})
    acc.Reload()
    return acc


def run(backprop, args, check_status=True):
    p = subprocess.run([backprop] + args, capture_output=True, text=True)
    if check_status and p.returncode != 0:
        raise SystemExit(f"check-tensorboard: backprop {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"])
    return out


def default_bins():
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return [-x for x in pos[::-1]] + [0] + pos


BINS = default_bins()


def reference_histogram(values):
    """PyTorch's make_histogram (bins="tensorflow"), as in torch.utils.tensorboard.summary."""
    values = values.astype(float).reshape(-1)
    counts, limits = np.histogram(values, bins=BINS)
    cum = np.cumsum(np.greater(counts, 0))
    start, end = np.searchsorted(cum, [0, cum[-1] - 1], side="right")
    start, end = int(start), int(end) + 1
    counts = counts[start - 1:end] if start > 0 else np.concatenate([[0], counts[:end]])
    limits = limits[start:end + 1]
    return dict(min=values.min(), max=values.max(), num=len(values), sum=values.sum(),
                sum_squares=values.dot(values), bucket_limit=limits.tolist(), bucket=counts.tolist())


EPOCH_TAGS = {"loss/train": "train_loss", "loss/test": "test_loss", "accuracy/train": "train_accuracy",
              "accuracy/test": "test_accuracy", "lr": "learning_rate", "images_per_second": "images_per_second"}


def check_epoch_scalars(acc, records, what):
    names = sorted(records[0]["gradient_norms"])
    steps = [r["epoch"] for r in records]
    for tag, key in EPOCH_TAGS.items():
        events = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
        check([e.step for e in events] == steps, f"{what}: {tag} steps {[e.step for e in events]} != {steps}")
        for e, r in zip(events, records):
            check(e.value == f32(r[key]), f"{what}: {tag} epoch {e.step}: {e.value!r} != float32({r[key]!r})")
    for name in names:
        tag = "grad_norm/" + name
        events = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
        check([e.step for e in events] == steps, f"{what}: {tag} steps")
        for e, r in zip(events, records):
            check(e.value == f32(r["gradient_norms"][name]), f"{what}: {tag} epoch {e.step}: {e.value} != {r['gradient_norms'][name]}")
    return names


def check_histogram_shape(h, count, what):
    check(h.num == count, f"{what}: num {h.num} != {count}")
    check(sum(h.bucket) == h.num, f"{what}: counts sum to {sum(h.bucket)}, not num {h.num}")
    check(all(a < b for a, b in zip(h.bucket_limit, h.bucket_limit[1:])), f"{what}: bucket limits not increasing")
    check(h.bucket_limit[0] <= h.min <= h.max < h.bucket_limit[-1] or h.max == h.bucket_limit[-1],
          f"{what}: [min, max] = [{h.min}, {h.max}] outside the buckets")
    check(len(h.bucket) == len(h.bucket_limit), f"{what}: {len(h.bucket)} counts, {len(h.bucket_limit)} limits")


def check_mlp(backprop, data, work):
    out = os.path.join(work, "mlp.safetensors")
    logdir = os.path.join(work, "mlp")
    p = run(backprop, ["train", "--data", data, "--limit", "2000", "--epochs", "3", "--batch", "100",
                       "--layers", "784,32,16,10", "--json", "--tensorboard", logdir, "--log-every", "7",
                       "--out", out, "--threads", "1"])
    records = json_lines(p.stdout)
    check(len(records) == 3, f"mlp: {len(records)} JSON lines")
    acc = load(logdir)
    tensors = read_safetensors(out)
    names = check_epoch_scalars(acc, records, "mlp")
    check(sorted(names) == sorted(tensors), f"mlp: gradient_norms names {names} != model tensors {sorted(tensors)}")
    scalars = set(acc.Tags()["scalars"])
    expected = set(EPOCH_TAGS) | {"grad_norm/" + n for n in names} | {"loss/step", "grad_norm/total"}
    check(scalars == expected, f"mlp: scalar tags {sorted(scalars ^ expected)} differ")
    steps = list(range(7, 3 * 20 + 1, 7))
    for tag in ("loss/step", "grad_norm/total"):
        events = acc.Scalars(tag)
        check([e.step for e in events] == steps, f"mlp: {tag} steps {[e.step for e in events]} != {steps}")
        check(all(math.isfinite(e.value) and e.value > 0 for e in events), f"mlp: {tag} values not positive")
    # Histograms: every parameter, every epoch; the last weights bin for bin as the model file's.
    hist_tags = set(acc.Tags()["histograms"])
    expected = {"weight/" + n for n in names} | {"grad/" + n for n in names}
    check(hist_tags == expected, f"mlp: histogram tags {sorted(hist_tags ^ expected)} differ")
    for n in names:
        for kind in ("weight", "grad"):
            events = acc.Histograms(f"{kind}/{n}") if f"{kind}/{n}" in hist_tags else []
            check([e.step for e in events] == [1, 2, 3], f"mlp: {kind}/{n} steps")
            for e in events:
                check_histogram_shape(e.histogram_value, tensors[n].size, f"mlp: {kind}/{n} epoch {e.step}")
        last = acc.Histograms("weight/" + n)[-1].histogram_value
        ref = reference_histogram(tensors[n])
        check(list(last.bucket_limit) == ref["bucket_limit"], f"mlp: weight/{n}: bucket limits differ from the model file's")
        check(list(last.bucket) == ref["bucket"], f"mlp: weight/{n}: counts differ from the model file's")
        check((last.min, last.max, last.num) == (ref["min"], ref["max"], ref["num"]), f"mlp: weight/{n}: min/max/num")
        check(math.isclose(last.sum, ref["sum"], rel_tol=1e-9, abs_tol=1e-9), f"mlp: weight/{n}: sum {last.sum} != {ref['sum']}")
        check(math.isclose(last.sum_squares, ref["sum_squares"], rel_tol=1e-9), f"mlp: weight/{n}: sum of squares")
    # The graph: one Parameter node per tensor, with its shape; the layers in order.
    check(acc.Tags()["graph"], "mlp: no graph")
    graph = acc.Graph()
    params = {n.attr["attr"].s.decode(): [d.size for d in n.attr["_output_shapes"].list.shape[0].dim]
              for n in graph.node if n.op == "Parameter"}
    check(params == {k: list(v.shape) for k, v in tensors.items()}, f"mlp: graph parameters {params}")
    layers = [n.op for n in graph.node if n.op not in ("Parameter", "IO Node")]
    check(layers == ["Dense", "ReLU", "Dense", "ReLU", "Dense"], f"mlp: graph layers {layers}")
    names_in_graph = {n.name for n in graph.node}
    check(all(i in names_in_graph for n in graph.node for i in n.input), "mlp: a node's input is not a node")
    out_node = [n for n in graph.node if n.name == "output"]
    check(out_node and [d.size for d in out_node[0].attr["_output_shapes"].list.shape[0].dim] == [1, 10], "mlp: output shape")
    # The flags as text.
    text = acc.Tensors("flags") if "flags" in acc.Tags()["tensors"] else []
    check(len(text) == 1 and b"--tensorboard" in text[0].tensor_proto.string_val[0] and b"| optimizer | sgd |" in text[0].tensor_proto.string_val[0],
          "mlp: flags text")
    meta = acc.SummaryMetadata("flags")
    check(meta.plugin_data.plugin_name == "text", "mlp: flags not for the text plugin")
    files = [f for f in os.listdir(logdir) if "tfevents" in f]
    check(len(files) == 1, f"mlp: {len(files)} event files")


def check_resume(backprop, data, work):
    logdir = os.path.join(work, "resume")
    out = os.path.join(work, "resume.safetensors")
    common = ["--data", data, "--limit", "600", "--batch", "100", "--layers", "784,16,10", "--json",
              "--tensorboard", logdir, "--log-every", "4", "--out", out, "--threads", "1"]
    first = json_lines(run(backprop, ["train", "--epochs", "2"] + common).stdout)
    # The second run: its own wall clock second.
    time.sleep(1.1)
    second = json_lines(run(backprop, ["train", "--epochs", "3", "--resume",
                                       os.path.join(work, "resume.checkpoint.safetensors")] + common).stdout)
    records = first + second
    check([r["epoch"] for r in records] == [1, 2, 3], f"resume: epochs {[r['epoch'] for r in records]}")
    files = sorted(f for f in os.listdir(logdir) if "tfevents" in f)
    check(len(files) == 2, f"resume: {len(files)} event files")
    acc = load(logdir)
    check_epoch_scalars(acc, records, "resume")
    steps = [e.step for e in acc.Scalars("loss/step")]
    check(steps == list(range(4, 18 + 1, 4)), f"resume: loss/step steps {steps}")
    for n in records[0]["gradient_norms"]:
        check([e.step for e in acc.Histograms("weight/" + n)] == [1, 2, 3], f"resume: weight/{n} steps")
    check([e.step for e in acc.Tensors("flags")] == [0, 2], "resume: flags at steps 0 and 2")


def check_kill(backprop, data, work):
    logdir = os.path.join(work, "kill")
    out = os.path.join(work, "kill.safetensors")
    proc = subprocess.Popen([backprop, "train", "--data", data, "--limit", "3000", "--epochs", "1000", "--batch", "100",
                             "--layers", "784,16,10", "--json", "--tensorboard", logdir, "--out", out, "--threads", "1"],
                            stdout=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    time.sleep(0.3)  # into the next epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    acc = load(logdir)
    events = acc.Scalars("loss/train")
    check(len(events) >= 1 and events[0].step == 1 and events[0].value == f32(first["train_loss"]), "kill: epoch 1 not readable")
    # A file cut inside its last record reads up to the record before.
    files = sorted(f for f in os.listdir(logdir) if "tfevents" in f)
    cut = os.path.join(work, "cut")
    os.makedirs(cut)
    with open(os.path.join(logdir, files[-1]), "rb") as f:
        data_bytes = f.read()
    # Record boundaries.
    offsets, i = [], 0
    while i + 12 <= len(data_bytes):
        n = struct.unpack("<Q", data_bytes[i:i + 8])[0]
        if i + 16 + n > len(data_bytes):
            break
        offsets.append(i)
        i += 16 + n
    check(i == len(data_bytes), f"kill: {len(data_bytes) - i} bytes after the last whole record")
    last = offsets[-1]
    with open(os.path.join(cut, files[-1]), "wb") as f:
        f.write(data_bytes[:last + 20])
    whole = load(logdir)
    partial = load(cut)
    count = lambda a: sum(len(a.Scalars(t)) for t in a.Tags()["scalars"]) + sum(len(a.Histograms(t)) for t in a.Tags()["histograms"])
    check(count(partial) == count(whole) - 1, f"kill: cut file reads {count(partial)} summaries, whole {count(whole)}")


def check_lstm(backprop, data, work):
    logdir = os.path.join(work, "lstm")
    out = os.path.join(work, "lstm.safetensors")
    records = json_lines(run(backprop, ["train", "--data", data, "--arch", "lstm", "--hidden", "16", "--limit", "300",
                                        "--epochs", "2", "--batch", "50", "--json", "--tensorboard", logdir,
                                        "--out", out, "--threads", "1"]).stdout)
    acc = load(logdir)
    check_epoch_scalars(acc, records, "lstm")
    tags = sorted(t for t in acc.Tags()["scalars"] if t.startswith("hidden_grad_norm/"))
    check(tags == [f"hidden_grad_norm/t{t:02d}" for t in range(1, 29)], f"lstm: hidden tags {tags}")
    # The same batch (the first 64 test images, x/255) through `backprop grads`.
    def idx(name):
        for path in (os.path.join(data, name), os.path.join(data, name + ".gz")):
            if os.path.exists(path):
                with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
                    return f.read()
        raise SystemExit(f"check-tensorboard: {name} not in {data}")
    images, labels = idx("t10k-images-idx3-ubyte"), idx("t10k-labels-idx1-ubyte")
    x = (np.frombuffer(images[16:16 + 64 * 784], dtype=np.uint8).astype(np.float32) / np.float32(255)).reshape(64, 28, 28)
    y = np.frombuffer(labels[8:8 + 64], dtype=np.uint8).astype("<i8")
    header = json.dumps({"input": {"dtype": "F32", "shape": [64, 28, 28], "data_offsets": [0, x.nbytes]},
                         "target": {"dtype": "I64", "shape": [64], "data_offsets": [x.nbytes, x.nbytes + y.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    batch = os.path.join(work, "probe.safetensors")
    with open(batch, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + x.astype("<f4").tobytes() + y.tobytes())
    grads = json.loads(run(backprop, ["grads", "--model", out, "--batch", batch, "--json"]).stdout)
    norms = grads["hidden_gradient_norms"]
    for t, tag in enumerate(tags):
        events = acc.Scalars(tag)
        check([e.step for e in events] == [1, 2], f"lstm: {tag} steps")
        check(math.isclose(events[-1].value, norms[t], rel_tol=1e-4, abs_tol=1e-9),
              f"lstm: {tag}: {events[-1].value} != backprop grads {norms[t]}")


def check_refusals(backprop, data, work):
    plain = os.path.join(work, "plain-file")
    with open(plain, "w") as f:
        f.write("x")
    for bad in (plain, "/proc/backprop-tensorboard"):
        p = run(backprop, ["train", "--data", data, "--limit", "200", "--epochs", "1", "--json", "--tensorboard", bad,
                           "--out", os.path.join(work, "refused.safetensors")], check_status=False)
        check(p.returncode != 0, f"refuse: --tensorboard {bad} exited 0")
        check(bad in p.stderr, f"refuse: the message does not name {bad}: {p.stderr!r}")
        check(not json_lines(p.stdout), f"refuse: --tensorboard {bad} trained")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backprop", default=os.path.join(ROOT, ".build", "debug", "backprop"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "mnist"))
    ap.add_argument("--work", help="keep the runs in this folder (default: a temporary one, removed)")
    args = ap.parse_args()
    if not os.path.exists(args.backprop):
        raise SystemExit(f"check-tensorboard: {args.backprop} not built")
    work = args.work or tempfile.mkdtemp(prefix="check-tensorboard-")
    os.makedirs(work, exist_ok=True)
    try:
        for part in (check_mlp, check_resume, check_kill, check_lstm, check_refusals):
            t = time.time()
            part(args.backprop, args.data, work)
            print(f"check-tensorboard: {part.__name__[6:]} done ({time.time() - t:.1f} s)", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"check-tensorboard: {CHECKS[0]} checks, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()

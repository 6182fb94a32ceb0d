#!/usr/bin/env python3
"""Writes the TensorBoard event-file fixtures of Tests/BackpropTensorBoardTests/Fixtures, once,
with the reference implementations: the `tensorboard` package's protocol buffers
(tensorboard.compat.proto) and record writer (tensorboard.summary.writer.record_writer), and
PyTorch's summary functions (torch.utils.tensorboard.summary: scalar, histogram with the
"tensorflow" bins, text) for what they put in a Summary.

    /work/venv/bin/python scripts/make-tensorboard-fixtures.py

The Swift tests write the same events with SummaryWriter (fixed wall times) and compare bytes.
Values are chosen so that sums and sums of squares are exact in float32 and float64 alike.
"""
import os

import numpy as np
from tensorboard.compat.proto import event_pb2, graph_pb2, node_def_pb2, attr_value_pb2
from tensorboard.compat.proto import tensor_shape_pb2, versions_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import summary as torch_summary

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "Tests", "BackpropTensorBoardTests", "Fixtures")
T0 = 1700000000.5


def write(name, events):
    with open(os.path.join(OUT, name), "wb") as f:
        w = RecordWriter(f)
        w.write(event_pb2.Event(wall_time=T0, file_version="brain.Event:2").SerializeToString(deterministic=True))
        for e in events:
            w.write(e.SerializeToString(deterministic=True))
        w.flush()


def summary_event(summary, step, t):
    return event_pb2.Event(wall_time=t, step=step, summary=summary)


def default_bins():
    # The bins PyTorch's SummaryWriter.__init__ computes for bins="tensorflow" (same loop).
    v, buckets, neg = 1e-12, [], []
    while v < 1e20:
        buckets.append(v)
        neg.append(-v)
        v *= 1.1
    return neg[::-1] + [0] + buckets


def main():
    os.makedirs(OUT, exist_ok=True)
    write("scalars.tfevents", [
        summary_event(torch_summary.scalar("loss/train", 0.25), 3, T0 + 1),
        summary_event(torch_summary.scalar("zero", 0.0), 0, T0 + 2),
        summary_event(torch_summary.scalar("big step", -1.5), 1 << 40, T0 + 3),
    ])
    bins = default_bins()
    write("histograms.tfevents", [
        summary_event(torch_summary.histogram("weight/0.weight", np.array([-2, -0.5, 0, 0.25, 0.25, 1, 3], dtype=np.float32), bins), 1, T0 + 1),
        summary_event(torch_summary.histogram("positive", np.array([0.5, 0.75, 4096], dtype=np.float32), bins), 2, T0 + 2),
        summary_event(torch_summary.histogram("one value", np.array([-1e-13], dtype=np.float32), bins), 3, T0 + 3),
    ])
    write("text.tfevents", [
        summary_event(torch_summary.text("flags", "backprop train --epochs 3 --tensorboard runs/mlp\n\n| a | b |\n|---|---|\n| é | 1 |"), 0, T0 + 1),
    ])

    def shape(dims):
        return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])

    def node(name, op, inputs, dims, attr):
        a = {"attr": attr_value_pb2.AttrValue(s=attr.encode())}
        if dims is not None:
            a["_output_shapes"] = attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=[shape(dims)]))
        return node_def_pb2.NodeDef(name=name, op=op, input=inputs, attr=a)

    graph = graph_pb2.GraphDef(node=[
        node("input", "IO Node", [], [2, 4], ""),
        node("Sequential/Dense[0]/weight", "Parameter", [], [3, 4], "0.weight"),
        node("Sequential/Dense[0]/bias", "Parameter", [], [3], "0.bias"),
        node("Sequential/Dense[0]/Dense", "Dense", ["input", "Sequential/Dense[0]/weight", "Sequential/Dense[0]/bias"], [2, 3], "Dense(4 → 3)"),
        node("Sequential/ReLU[1]/ReLU", "ReLU", ["Sequential/Dense[0]/Dense"], [2, 3], "ReLU"),
        node("output", "IO Node", ["Sequential/ReLU[1]/ReLU"], [2, 3], ""),
        node("no shape", "Mul", ["input", "input"], None, ""),
    ], versions=versions_pb2.VersionDef(producer=22))
    write("graph.tfevents", [event_pb2.Event(wall_time=T0 + 1, graph_def=graph.SerializeToString(deterministic=True))])


if __name__ == "__main__":
    main()

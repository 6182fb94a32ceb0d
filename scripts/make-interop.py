#!/usr/bin/env python3
"""safetensors interoperability fixtures for Tests/BackpropTests/SafetensorsTests.swift.

Write the Python-side files (from the repository root):

    /tmp/torchenv/bin/python scripts/make-interop.py          (torch + numpy + safetensors)

    interop_numpy.safetensors   safetensors.numpy.save_file, float32, PyTorch Sequential names
                                (0.weight [3,2], 0.bias [3], 2.weight [2,3], 2.bias [2]), no metadata;
                                values: element i of each tensor (row-major) is OFFSET + i * 0.25,
                                OFFSET = 0, 10, 20, 30 in the order listed.
    interop_dtypes.safetensors  safetensors.torch.save_file, one tensor per dtype the reader converts
                                (F64, F16, BF16, I64, I32, I16, I8, U8, BOOL) with exactly known values,
                                metadata {"format": "pt"}.

Check that Python reads a file written by OUR writer (the committed ours_written.safetensors):

    /tmp/torchenv/bin/python scripts/make-interop.py --check

ours_written.safetensors is produced by the Swift test `SafetensorsTests.testWriterMatchesCommittedFile`
(run it with BACKPROP_REGENERATE_FIXTURES=1 to rewrite the file); without that variable the test checks
that our writer reproduces the committed bytes exactly, so the file --check verifies is what the writer
produces today. The expected content below must match `SafetensorsTests.oursWrittenContent()`.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "Tests", "BackpropTests", "Fixtures")


def numpy_file():
    from safetensors.numpy import save_file
    tensors = {}
    for k, (name, shape) in enumerate([("0.weight", (3, 2)), ("0.bias", (3,)),
                                       ("2.weight", (2, 3)), ("2.bias", (2,))]):
        n = int(np.prod(shape))
        tensors[name] = (10.0 * k + 0.25 * np.arange(n)).astype(np.float32).reshape(shape)
    save_file(tensors, os.path.join(FIX, "interop_numpy.safetensors"))


def dtypes_file():
    import torch
    from safetensors.torch import save_file
    tensors = {
        "f64": torch.tensor([[1.5, -2.0], [1e-3, 3.0e38]], dtype=torch.float64),
        "f16": torch.tensor([0.5, -1.0, 65504.0, 6.103515625e-05, 5.960464477539063e-08, 0.0], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.5, 0.15625, 1.0e30], dtype=torch.bfloat16),
        "i64": torch.tensor([0, 3, 1, 2, -7], dtype=torch.int64),
        "i64_big": torch.tensor([2**40 + 1, -(2**62)], dtype=torch.int64),
        "i32": torch.tensor([[-5, 7], [2**24, -(2**24)]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 5, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True], dtype=torch.bool),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    save_file(tensors, os.path.join(FIX, "interop_dtypes.safetensors"), metadata={"format": "pt"})


def check_ours():
    from safetensors import safe_open
    from safetensors.numpy import load_file
    path = os.path.join(FIX, "ours_written.safetensors")
    got = load_file(path)
    with safe_open(path, "np") as f:
        metadata = f.metadata()
    expected = {
        "0.weight": (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3),
        "0.bias": np.array([1.5, -2.25, 3e-8], dtype=np.float32),
        "layer.norm/π": np.array([[[-0.0, 1e30], [np.float32(1) / 3, -7]]], dtype=np.float32),
        "scalar": np.array(42, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    expected_metadata = {"format": "pt", "note": 'quote " backslash \\ newline \n unicode é ✓'}
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for k, v in expected.items():
        assert got[k].dtype == np.float32 and got[k].shape == v.shape, (k, got[k].dtype, got[k].shape)
        assert np.array_equal(got[k].view(np.uint32), v.view(np.uint32)), (k, got[k], v)
    assert metadata == expected_metadata, metadata
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0, "data must start 8-byte aligned"
    print(f"{os.path.normpath(path)}: read by safetensors, {len(got)} tensors and metadata as expected")


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check_ours()
    else:
        numpy_file()
        dtypes_file()
        print("wrote interop_numpy.safetensors and interop_dtypes.safetensors", file=sys.stderr)

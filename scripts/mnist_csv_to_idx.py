#!/usr/bin/env python3
"""Convert an MNIST CSV (label first, then 784 pixels 0..255, optional header line) into the
two standard IDX files, gzip-compressed:

    mnist_csv_to_idx.py CSV IMAGES.gz LABELS.gz [--expect N]

CSV may be a plain path or `ARCHIVE.whl!member/path.csv` (read straight from a zip/wheel).
Standard library only. The IDX layout (http://yann.lecun.com/exdb/mnist/):
  images: magic 0x00000803, count, rows=28, cols=28 (big-endian u32), then count*784 bytes
  labels: magic 0x00000801, count, then count bytes
"""
import gzip
import io
import os
import struct
import sys
import zipfile

ROWS = COLS = 28
PIXELS = ROWS * COLS


def open_csv(spec):
    if "!" in spec:
        archive, member = spec.split("!", 1)
        z = zipfile.ZipFile(archive)
        return io.TextIOWrapper(z.open(member), encoding="ascii", newline="")
    return open(spec, "r", encoding="ascii", newline="")


def convert(csv_spec, images_path, labels_path, expect=None):
    images = bytearray()
    labels = bytearray()
    with open_csv(csv_spec) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            cells = line.split(",")
            if lineno == 1 and not cells[0].strip().isdigit():
                continue  # header line ("label,1x1,1x2,...")
            if len(cells) != 1 + PIXELS:
                sys.exit(f"{csv_spec}: line {lineno}: {len(cells)} cells, expected {1 + PIXELS}")
            try:
                # bytes() rejects anything outside 0...255 with ValueError.
                row = bytes(map(int, cells))
            except ValueError as e:
                sys.exit(f"{csv_spec}: line {lineno}: {e}")
            if row[0] > 9:
                sys.exit(f"{csv_spec}: line {lineno}: label {row[0]} outside 0...9")
            labels.append(row[0])
            images += row[1:]
    n = len(labels)
    if expect is not None and n != expect:
        sys.exit(f"{csv_spec}: {n} rows, expected {expect}")
    for path, header, body in (
        (images_path, struct.pack(">IIII", 0x00000803, n, ROWS, COLS), images),
        (labels_path, struct.pack(">II", 0x00000801, n), labels),
    ):
        tmp = path + ".tmp"
        # mtime=0: byte-identical output on every run.
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(header)
            gz.write(body)
        os.replace(tmp, path)  # atomic: a half-written file never carries the final name
    return n


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description="MNIST CSV -> IDX .gz")
    p.add_argument("csv", help="CSV path, or ARCHIVE.whl!member.csv")
    p.add_argument("images", help="output images .gz")
    p.add_argument("labels", help="output labels .gz")
    p.add_argument("--expect", type=int, default=None, help="required row count")
    a = p.parse_args(argv)
    n = convert(a.csv, a.images, a.labels, a.expect)
    print(f"wrote {n} images to {a.images} and labels to {a.labels}")


if __name__ == "__main__":
    main(sys.argv[1:])

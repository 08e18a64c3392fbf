#!/usr/bin/python3
"""Reads a twist checkpoint with only the standard library and torch.frombuffer.

    read_safetensors.py DIR

Checks, independently of twist's C code:
  - checksums.json: every listed file has the stated size and SHA-256 (hashlib);
  - model.safetensors / optimizer.safetensors follow the safetensors format: u64 little-endian
    header length, JSON header padded with spaces to 8-byte alignment, F32 tensors whose
    data_offsets tile the data region exactly;
  - the tensors (read with torch.frombuffer) and metadata equal DIR/expected.json, written by
    tests/test_checkpoint.c with exact hexadecimal float values.
Exits 0 when everything matches, 1 otherwise (printing what differs).
"""
import hashlib
import json
import os
import struct
import sys

import torch


def fail(message):
    print("read_safetensors.py: FAIL:", message)
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if (8 + n) % 8 != 0:
        fail(f"{path}: header length {n} leaves the data unaligned")
    if 8 + n > len(raw):
        fail(f"{path}: header length {n} exceeds the file")
    text = raw[8 : 8 + n].decode("utf-8")
    if not text.startswith("{") or not text.rstrip(" ").endswith("}"):
        fail(f"{path}: header is not a JSON object padded with spaces")
    header = json.loads(text)
    data = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    ranges = []
    for name, info in header.items():
        if info["dtype"] != "F32":
            fail(f"{path}: {name} has dtype {info['dtype']}")
        shape = info["shape"]
        begin, end = info["data_offsets"]
        count = 1
        for d in shape:
            count *= d
        if end - begin != 4 * count:
            fail(f"{path}: {name}: shape {shape} does not match offsets [{begin}, {end}]")
        ranges.append((begin, end, name))
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=torch.float32)
        else:
            # Little-endian float32, as the format requires (and this x86/ARM host is).
            buf = bytearray(data[begin:end])
            tensors[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(shape)
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            fail(f"{path}: {name} starts at {begin}, expected {position} (gap or overlap)")
        position = end
    if position != len(data):
        fail(f"{path}: tensors cover {position} of {len(data)} data bytes")
    return tensors, metadata


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    ckpt = sys.argv[1]
    with open(os.path.join(ckpt, "checksums.json")) as f:
        sums = json.load(f)
    if sums.get("format") != "twist-checkpoint" or sums.get("version") != 1:
        fail("checksums.json: wrong format or version")
    for name, entry in sums["files"].items():
        with open(os.path.join(ckpt, name), "rb") as f:
            content = f.read()
        if len(content) != entry["size"]:
            fail(f"{name}: size {len(content)} != {entry['size']}")
        digest = hashlib.sha256(content).hexdigest()
        if digest != entry["sha256"]:
            fail(f"{name}: sha256 {digest} != {entry['sha256']}")
    print(f"checksums: {len(sums['files'])} files verified with hashlib")

    parts = {
        "model": read_safetensors(os.path.join(ckpt, "model.safetensors")),
        "optimizer": read_safetensors(os.path.join(ckpt, "optimizer.safetensors")),
    }
    with open(os.path.join(ckpt, "expected.json")) as f:
        expected = json.load(f)
    if parts["model"][1] != expected["metadata"]:
        fail(f"model metadata {parts['model'][1]} != {expected['metadata']}")
    seen = {"model": set(), "optimizer": set()}
    for t in expected["tensors"]:
        tensors, _ = parts[t["part"]]
        name = t["name"]
        if name not in tensors:
            fail(f"{t['part']}: missing {name}")
        got = tensors[name]
        want = torch.tensor([float.fromhex(v) for v in t["values"]], dtype=torch.float32)
        want = want.reshape(t["shape"])
        if list(got.shape) != t["shape"]:
            fail(f"{name}: shape {list(got.shape)} != {t['shape']}")
        if not torch.equal(got, want):
            diff = (got - want).abs().max().item()
            fail(f"{name}: values differ (max abs diff {diff})")
        seen[t["part"]].add(name)
    for part, (tensors, _) in parts.items():
        extra = set(tensors) - seen[part]
        if extra:
            fail(f"{part}: unexpected tensors {sorted(extra)}")
    count = sum(len(s) for s in seen.values())
    print(f"tensors: {count} read with torch.frombuffer, all bit-identical to twist's values")


if __name__ == "__main__":
    main()

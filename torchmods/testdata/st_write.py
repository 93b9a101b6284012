"""Writes (and reads back) safetensors files by hand (Debian has no safetensors package). Shared by the fixture scripts."""
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}


def write(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        # bytes through an untyped view: numpy has no bfloat16
        b = t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    return len(tensors), off


DTYPE_OF = {v: k for k, v in DTYPES.items()}


def read(path):
    """Reads a safetensors file into ({name: tensor}, metadata), the inverse of write."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    metadata = header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        start, end = e["data_offsets"]
        raw = bytearray(b[8 + n + start:8 + n + end])
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        out[name] = flat.view(DTYPE_OF[e["dtype"]]).reshape(e["shape"])
    return out, metadata

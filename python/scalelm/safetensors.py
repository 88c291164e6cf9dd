"""The safetensors format (HuggingFace) with torch alone: an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}} (+ "__metadata__" of strings), then the raw little-endian data."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from typing import Any

import torch

_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
}


class SafetensorsError(Exception):
    def __init__(self, file: str, detail: str) -> None:
        super().__init__(f"{file}: {detail}")


def write_safetensors(
    file: str, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str] | None = None
) -> int:
    """Writes F32 tensors in the given order and fsyncs; returns the bytes written."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs: list[bytes] = []
    offset = 0
    for name, t in tensors:
        b = _bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    return 8 + len(js) + offset


def _bytes(t: torch.Tensor) -> bytes:
    # Little-endian float32 bytes without numpy (torch-only core): the uint8 view, through a bytearray.
    flat = t.detach().to("cpu", torch.float32).contiguous().reshape(-1).view(torch.uint8)
    buf = bytearray(flat.numel())
    if buf:
        torch.frombuffer(buf, dtype=torch.uint8).copy_(flat)
    return bytes(buf)


def read_safetensors(file: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor as float32 (F16/BF16 widened), and the metadata."""
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SafetensorsError(file, "no such file") from None
    if len(raw) < 8:
        raise SafetensorsError(file, "too short to be a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SafetensorsError(file, f"header of {n} bytes runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError as e:
        raise SafetensorsError(file, f"header is not JSON ({e})") from None
    data = bytearray(raw[8 + n :])
    meta = header.pop("__metadata__", {}) or {}
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        info: dict[str, Any] = entry
        dtype = _DTYPES.get(info.get("dtype", ""))
        if dtype is None:
            raise SafetensorsError(file, f"tensor {name}: unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * torch.empty((), dtype=dtype).element_size() or end > len(data):
            raise SafetensorsError(
                file, f"tensor {name}: data_offsets {begin}..{end} do not fit {info['dtype']} {list(shape)}"
            )
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=begin) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape).to(torch.float32).clone()
    return out, meta

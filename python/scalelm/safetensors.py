"""The safetensors format (HuggingFace) with torch alone: an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}} (+ "__metadata__" of strings), then the raw little-endian data."""

from __future__ import annotations

import json
import os
import stat
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


# The same bounds as the runtime's reader (runtime/train/safetensors.ts, runtime/files.ts): a checkpoint
# folder can come from anywhere, so nothing in the file is trusted before it is checked.
MAX_FILE_BYTES = 2**32 - 1
MAX_HEADER_BYTES = 16 * 2**20
MAX_TENSORS = 65_536


def _read_bounded(file: str) -> bytes:
    """The whole file, if it is a regular file of at most MAX_FILE_BYTES (a FIFO would block, /dev/zero fill memory)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SafetensorsError(file, "no such file") from None
    except OSError as e:
        raise SafetensorsError(file, e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SafetensorsError(file, "is not a regular file (a FIFO or a device?)")
        if st.st_size > MAX_FILE_BYTES:
            raise SafetensorsError(
                file, f"is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a checkpoint file may have"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(st.st_size)
    finally:
        os.close(fd)


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_safetensors(file: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor as float32 (F16/BF16 widened), and the metadata. SafetensorsError for anything malformed."""
    raw = _read_bounded(file)
    if len(raw) < 8:
        raise SafetensorsError(file, "too short to be a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SafetensorsError(file, f"header of {n} bytes runs past the end of the file")
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(file, f"header of {n} bytes is more than the {MAX_HEADER_BYTES} this reader accepts")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (ValueError, RecursionError) as e:
        raise SafetensorsError(file, f"header is not JSON ({str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(file, "header is not a JSON object")
    if len(header) > MAX_TENSORS + 1:
        raise SafetensorsError(file, f"header has {len(header)} entries; at most {MAX_TENSORS} tensors are accepted")
    data = bytearray(raw[8 + n :])
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SafetensorsError(file, "__metadata__ must map strings to strings")
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise SafetensorsError(file, f"tensor {name[:200]}: its entry is not an object")
        info: dict[str, Any] = entry
        dtype = _DTYPES.get(info.get("dtype", "")) if isinstance(info.get("dtype"), str) else None
        if dtype is None:
            raise SafetensorsError(file, f"tensor {name[:200]}: unsupported dtype {str(info.get('dtype'))[:40]!r}")
        offsets, shape_in = info.get("data_offsets"), info.get("shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)):
            raise SafetensorsError(file, f"tensor {name[:200]}: data_offsets must be two non-negative whole numbers")
        if not (isinstance(shape_in, list) and len(shape_in) <= 8 and all(_count(d) for d in shape_in)):
            raise SafetensorsError(file, f"tensor {name[:200]}: shape must be at most 8 non-negative whole numbers")
        begin, end = offsets
        shape = tuple(shape_in)
        count = 1
        for d in shape:
            count *= d
        if end < begin or end - begin != count * torch.empty((), dtype=dtype).element_size() or end > len(data):
            raise SafetensorsError(
                file, f"tensor {name[:200]}: data_offsets {begin}..{end} do not fit {info['dtype']} {list(shape)}"
            )
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=begin) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape).to(torch.float32).clone()
    return out, meta

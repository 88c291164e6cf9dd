"""The Python trainer's safetensors reader against checkpoint files from elsewhere (issue 12, re-attack).

A resumed torch-engine run reads model.safetensors / optimizer.safetensors in Python; the runtime's own reader
was hardened in the first pass, this one was not: a FIFO hung it, /dev/zero behind a link filled memory, and
a header that is not an object of objects crashed it with TypeError, AttributeError or RecursionError instead
of one SafetensorsError naming the file.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch

from scalelm.safetensors import SafetensorsError, read_safetensors, write_safetensors


def _file(path: Path, header: object | bytes, data: bytes = b"") -> str:
    js = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(js)) + js + data)
    return str(path)


F32 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


@pytest.mark.parametrize(
    ("name", "header", "reason"),
    [
        ("list", [1, 2], "header is not a JSON object"),
        ("entry", {"a": 5}, "tensor a: its entry is not an object"),
        ("offsets", {"a": {**F32, "data_offsets": "xy"}}, "data_offsets must be two non-negative whole numbers"),
        ("negative", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [-16, 0]}}, "data_offsets must be two"),
        ("shape", {"a": {**F32, "shape": "1"}}, "shape must be at most 8 non-negative whole numbers"),
        ("reversed", {"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}, "do not fit"),
        ("dtype", {"a": {**F32, "dtype": ["F32"]}}, "unsupported dtype"),
        ("metadata", {"__metadata__": [1], "a": F32}, "__metadata__ must map strings to strings"),
        ("deep", b"[" * 100_000 + b"]" * 100_000, "header is not JSON"),
    ],
)
def test_malformed_headers_are_one_error(tmp_path: Path, name: str, header: object, reason: str) -> None:
    file = _file(tmp_path / f"{name}.safetensors", header, b"\0" * 16)
    with pytest.raises(SafetensorsError, match=reason) as e:
        read_safetensors(file)
    assert file in str(e.value)


def test_fifo_and_device_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(SafetensorsError, match="is not a regular file"):
        read_safetensors(str(fifo))
    zero = tmp_path / "zero.safetensors"
    zero.symlink_to("/dev/zero")
    with pytest.raises(SafetensorsError, match="is not a regular file"):
        read_safetensors(str(zero))


def test_a_written_file_still_reads_back(tmp_path: Path) -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    file = str(tmp_path / "ok.safetensors")
    write_safetensors(file, [("w", t)], {"format": "pt"})
    tensors, meta = read_safetensors(file)
    assert torch.equal(tensors["w"], t)
    assert meta == {"format": "pt"}

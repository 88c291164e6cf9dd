"""The torch engine's data rows equal the local engine's, computed by the built runtime (node) in the test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from engines import EXAMPLE, REPO

from scalelm.data import BatchSampler, DataError, load_tokens
from scalelm.model import initial_value, model_shape, param_specs
from scalelm.rng import Rng

NODE = """
const { loadTokens, BatchSampler } = require(process.argv[1] + '/out/runtime/train/data.js');
const { initialValues } = require(process.argv[1] + '/out/runtime/model/params.js');
const [source, path, vocab, seq, seed] = JSON.parse(process.argv[2]);
const s = loadTokens({ source, path, valFraction: 0.1 }, process.argv[3], { vocab, seqLen: seq }, seed, true);
const out = {};
for (const split of ['train', 'val']) {
  const b = new BatchSampler(s[split], seq, seed, split);
  out[split] = [[1, 0, 3], [7, 5, 2], [123456, 17, 1]].map(([step, row, rows]) => {
    const x = b.batch(step, row, rows);
    return [Array.from(x.tokens), Array.from(x.targets)];
  });
}
const spec = { name: 'h.0.attn.c_attn.weight', shape: [8, 24], init: { kind: 'normal', std: 0.02 }, decay: true };
out.init = Array.from(initialValues(spec, seed));
console.log(JSON.stringify(out));
"""


def node_rows(source: str, path: str | None, vocab: int, seq: int, seed: int) -> dict[str, list[list[list[int]]]]:
    if not (REPO / "out" / "runtime" / "train" / "data.js").exists() or not shutil.which("node"):
        pytest.skip("the runtime is not compiled (npx tsc -p .)")
    out = subprocess.run(
        ["node", "-e", NODE, str(REPO), json.dumps([source, path, vocab, seq, seed]), str(EXAMPLE.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "source,path,vocab,seq,seed", [("text", "data/tiny.txt", 256, 32, 1234), ("synthetic", None, 300, 16, 99)]
)
def test_rows_equal_the_local_engine(source: str, path: str | None, vocab: int, seq: int, seed: int) -> None:
    expected = node_rows(source, path, vocab, seq, seed)
    stream = load_tokens(
        {"source": source, "path": path, "valFraction": 0.1}, str(EXAMPLE.parent), vocab, seq, seed, True
    )
    for split in ("train", "val"):
        sampler = BatchSampler(stream.train if split == "train" else stream.val, seq, seed, split)
        for (step, row, rows), (tokens, targets) in zip(
            [(1, 0, 3), (7, 5, 2), (123456, 17, 1)], expected[split], strict=True
        ):
            x, y = sampler.batch(step, row, rows)
            assert x.reshape(-1).tolist() == tokens
            assert y.reshape(-1).tolist() == targets
    # and the rows are not all alike (the comparison can fail)
    a, _ = BatchSampler(stream.train, seq, seed, "train").batch(1, 0, 2)
    assert a[0].tolist() != a[1].tolist()


def test_initial_weights_equal_the_local_engines() -> None:
    expected = node_rows("text", "data/tiny.txt", 256, 32, 1234)["init"]
    got = initial_value(
        next(
            p
            for p in param_specs(
                model_shape(
                    dict(
                        layers=1,
                        hidden=8,
                        heads=2,
                        kvHeads=2,
                        ffnHidden=32,
                        vocab=256,
                        seqLen=32,
                        activation="gelu",
                        norm="layernorm",
                        tiedEmbeddings=True,
                        bias=True,
                        positionEmbedding="learned",
                    )
                )
            )
            if p.name == "h.0.attn.c_attn.weight"
        ),
        1234,
        True,
    )
    assert torch.equal(got.reshape(-1), torch.tensor(expected, dtype=torch.float32))
    assert Rng(1234, "a").next_uint32() != Rng(1234, "b").next_uint32()


def test_bad_data_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_tokens({"source": "text", "path": "nope.txt"}, str(tmp_path), 256, 32, 1, False)
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="odd"):
        load_tokens({"source": "tokens", "path": "odd.bin"}, str(tmp_path), 256, 32, 1, False)
    with pytest.raises(DataError, match=r"model\.vocab to 256"):
        load_tokens(
            {"source": "text", "path": str(EXAMPLE.parent / "data" / "tiny.txt")}, str(tmp_path), 100, 32, 1, False
        )

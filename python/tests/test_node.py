"""Which machine a rank is on (protocol NodeRef): from `scalelm launch --node-rank`, else torchrun's GROUP_RANK
when its job spans several nodes; none on one machine (absent = the coordinator's)."""

from __future__ import annotations

import socket

import pytest

from scalelm.channel import node_ref


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, None),
        ({"GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1"}, None),
        ({"GROUP_RANK": "1", "GROUP_WORLD_SIZE": "2"}, 1),
        ({"SCALELM_NODE_RANK": "3", "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "4"}, 3),
        ({"SCALELM_NODE_RANK": "0"}, 0),
        ({"SCALELM_NODE_RANK": "-1"}, None),
    ],
)
def test_node_ref(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], want: int | None) -> None:
    for k in ("SCALELM_NODE_RANK", "GROUP_RANK", "GROUP_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got = node_ref()
    assert got == (None if want is None else {"rank": want, "host": socket.gethostname()})

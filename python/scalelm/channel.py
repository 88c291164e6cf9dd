"""The rank channel client (docs/rank-channel.md): one JSON object per line to the coordinator.

Address and secret from SCALELM_CHANNEL (unix:/path or tcp:HOST:PORT) and SCALELM_CHANNEL_TOKEN; the first
line is the hello with the token; control lines ({k:'control', action:'stop'|'checkpoint', folder?}) arrive
on a reader thread and are kept until the training loop takes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from typing import Any

MAX_LINE = 1 << 20


class ChannelError(Exception):
    pass


def node_ref() -> dict[str, Any] | None:
    """This rank's machine in a multi-node run ({rank, host}, protocol NodeRef), else None.

    The node rank is `scalelm launch --node-rank` (SCALELM_NODE_RANK), else torchrun's GROUP_RANK when its
    job spans several nodes (GROUP_WORLD_SIZE > 1); a one-machine run has none (absent = the coordinator's).
    """
    raw = os.environ.get("SCALELM_NODE_RANK")
    if raw is None and int(os.environ.get("GROUP_WORLD_SIZE", "1") or "1") > 1:
        raw = os.environ.get("GROUP_RANK")
    if raw is None or not raw.isdigit():
        return None
    return {"rank": int(raw), "host": socket.gethostname()[:255]}


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._controls: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="scalelm-channel", daemon=True)
        self._reader.start()

    @staticmethod
    def connect(address: str, timeout: float = 30.0) -> Channel:
        try:
            if address.startswith("unix:"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(address[len("unix:") :])
            elif address.startswith("tcp:"):
                host, _, port = address[len("tcp:") :].rpartition(":")
                s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
            else:
                raise ChannelError(f"SCALELM_CHANNEL={address!r}: expected unix:/path or tcp:HOST:PORT")
        except OSError as e:
            raise ChannelError(f"cannot reach the coordinator at {address}: {e}") from None
        s.settimeout(None)
        return Channel(s)

    @staticmethod
    def from_env(rank: int, world: int, local_rank: int, engine: str = "torch") -> Channel | None:
        """The channel named by the environment (None when there is none), with the hello sent."""
        address = os.environ.get("SCALELM_CHANNEL")
        if not address:
            return None
        token = os.environ.get("SCALELM_CHANNEL_TOKEN", "")
        ch = Channel.connect(address)
        ch.send(
            {
                "k": "hello",
                "rank": rank,
                "pid": os.getpid(),
                "token": token,
                "world": world,
                "engine": engine,
                "node": socket.gethostname(),
                "localRank": local_rank,
                **({"nodeRank": node["rank"]} if (node := node_ref()) else {}),
            }
        )
        return ch

    def send(self, obj: dict[str, Any]) -> None:
        line = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()
        if len(line) > MAX_LINE:
            raise ChannelError(f"a {obj.get('k')} line of {len(line)} bytes exceeds the channel's 1 MiB limit")
        with self._lock:
            if self._closed:
                return
            try:
                self.sock.sendall(line)
            except OSError as e:
                raise ChannelError(f"the coordinator closed the channel: {e}") from None

    def msg(self, rank: int, m: dict[str, Any]) -> None:
        self.send({"k": "msg", "rank": rank, "m": m})

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict) and obj.get("k") == "control" and obj.get("action") in ("stop", "checkpoint"):
                    with self._lock:
                        self._controls.append(obj)
            # A line longer than the channel allows is not the coordinator's: stop reading rather than buffer
            # it without bound (the same cap as the coordinator's side).
            if len(buf) > MAX_LINE:
                return

    def take_controls(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self._controls = self._controls, []
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

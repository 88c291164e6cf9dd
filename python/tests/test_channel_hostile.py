"""The rank channel client's reader against lines the coordinator would never send (issue 12).

A deeply nested line raised RecursionError, which is not a ValueError, and killed the reader thread (later
stop requests were lost); a line without a newline grew the buffer without bound. Both must leave the rank
running: the first is skipped, the second ends the reading at the channel's 1 MiB cap.
"""

from __future__ import annotations

import socket

from scalelm.channel import MAX_LINE, Channel


def test_deep_line_is_skipped_and_later_controls_arrive() -> None:
    ours, theirs = socket.socketpair()
    ch = Channel(ours)
    try:
        theirs.sendall(b"[" * 200_000 + b"]" * 200_000 + b"\n")
        theirs.sendall(b'{"k":"control","action":"stop"}\n')
        ch._reader.join(timeout=0.5)
        assert ch._reader.is_alive(), "the reader thread died on a deep line"
        for _ in range(100):
            if ch.take_controls():
                break
            ch._reader.join(timeout=0.05)
        else:
            raise AssertionError("the stop after the deep line never arrived")
    finally:
        ch.close()
        theirs.close()


def test_endless_line_stops_reading_at_the_cap() -> None:
    ours, theirs = socket.socketpair()
    ch = Channel(ours)
    try:
        theirs.setblocking(False)
        sent = 0
        chunk = b"a" * 65536
        # The reader stops at MAX_LINE: the peer's sends then fill the socket buffers and block.
        while sent < 64 * MAX_LINE:
            try:
                sent += theirs.send(chunk)
            except BlockingIOError:
                ch._reader.join(timeout=2)
                if not ch._reader.is_alive():
                    break
        assert not ch._reader.is_alive(), "the reader kept buffering past the line cap"
        assert sent < 16 * MAX_LINE
    finally:
        ch.close()
        theirs.close()

"""A bit-exact port of runtime/model/rng.ts: the local engine's seeded random numbers.

Every value is a pure function of (seed, stream name, position), so the torch engine draws the same initial
weights and reads the same data windows as the local engine without exchanging anything.
"""

from __future__ import annotations

import math
import struct

_M32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    """JavaScript's Math.imul, as an unsigned 32-bit result."""
    return (a * b) & _M32


def hash_string(s: str) -> int:
    """FNV-1a over UTF-16 code units (JavaScript's charCodeAt)."""
    h = 0x811C9DC5
    for unit in struct.unpack(f"<{len(s.encode('utf-16-le')) // 2}H", s.encode("utf-16-le")):
        h ^= unit
        h = _imul(h, 0x01000193)
    return h


def mix(*words: int) -> int:
    h = 0x9E3779B9
    for w in words:
        h ^= w & _M32
        h = _imul(h ^ (h >> 16), 0x85EBCA6B)
        h = _imul(h ^ (h >> 13), 0xC2B2AE35)
        h ^= h >> 16
    return h


def uniform_at(*words: int) -> float:
    hi = mix(*words, 0x68E31DA4) >> 5
    lo = mix(*words, 0xB5297A4D) >> 6
    return (hi * 67108864 + lo) / 9007199254740992


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


class Rng:
    """xoshiro128** seeded through splitmix32, with Box-Muller normals (both values used)."""

    def __init__(self, seed: int, stream: str = "") -> None:
        x = mix(seed & _M32, (seed // 2**32) & _M32, hash_string(stream))
        state: list[int] = []
        for _ in range(4):
            x = (x + 0x9E3779B9) & _M32
            z = x
            z = _imul(z ^ (z >> 16), 0x85EBCA6B)
            z = _imul(z ^ (z >> 13), 0xC2B2AE35)
            state.append(z ^ (z >> 16))
        if not any(state):
            state[0] = 1
        self.s0, self.s1, self.s2, self.s3 = state
        self._spare: float | None = None

    def next_uint32(self) -> int:
        result = _imul(_rotl(_imul(self.s1, 5), 7), 9)
        t = (self.s1 << 9) & _M32
        self.s2 ^= self.s0
        self.s3 ^= self.s1
        self.s1 ^= self.s2
        self.s0 ^= self.s3
        self.s2 ^= t
        self.s3 = _rotl(self.s3, 11)
        return result

    def uniform(self) -> float:
        return ((self.next_uint32() >> 5) * 67108864 + (self.next_uint32() >> 6)) / 9007199254740992

    def normal(self) -> float:
        if self._spare is not None:
            s = self._spare
            self._spare = None
            return s
        u = 0.0
        while u == 0.0:
            u = self.uniform()
        v = self.uniform()
        r = math.sqrt(-2 * math.log(u))
        self._spare = r * math.sin(2 * math.pi * v)
        return r * math.cos(2 * math.pi * v)

"""Byte-level mutations of DER for property tests: bytes flipped or cut at drawn positions.

A mutation is (position, flip, amount): XOR the byte at the position with ``amount``, or cut
``1 + amount % 8`` bytes from it. Positions are drawn from a fixed range and taken modulo the
length, because the length of what is mutated may differ between runs of one example (an
ECDSA signature's DER does, from one signing to the next), and hypothesis must draw the same
values each time it replays an example.
"""

from __future__ import annotations

from hypothesis import strategies as st

Mutation = tuple[int, bool, int]

#: One to three mutations.
MUTATIONS = st.lists(st.tuples(st.integers(0, 4095), st.booleans(), st.integers(1, 255)),
                     min_size=1, max_size=3)


def mutate(der: bytes, mutations: list[Mutation]) -> bytes:
    """``der`` with ``mutations`` applied in order (empty if the cuts took every byte)."""
    out = bytearray(der)
    for where, flip, amount in mutations:
        if not out:
            break
        pos = where % len(out)
        if flip:
            out[pos] ^= amount
        else:
            del out[pos:pos + 1 + amount % 8]
    return bytes(out)

"""service/entropy.py: OS CSPRNG bytes read a block at a time, each handed out once."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from service import entropy
from service.pki.serial import new_serial
from tests.source_tree import python_files, relative


def test_bytes_are_never_handed_out_twice_across_refills() -> None:
    chunks = [entropy.random_bytes(16) for _ in range(3 * entropy.BLOCK_BYTES // 16 + 7)]
    assert all(len(c) == 16 for c in chunks)
    assert len(set(chunks)) == len(chunks)


def test_a_request_larger_than_the_rest_of_the_block_reads_a_fresh_block() -> None:
    pool = entropy._Pool()
    first = pool.take(entropy.BLOCK_BYTES - 8)
    before = pool.refills
    nxt = pool.take(16)
    assert pool.refills == before + 1  # the 8 unread bytes were dropped, not combined
    assert nxt not in first
    big = pool.take(3 * entropy.BLOCK_BYTES)
    assert len(big) == 3 * entropy.BLOCK_BYTES
    assert pool.take(0) == b""
    with pytest.raises(ValueError, match="n must be"):
        pool.take(-1)


def test_identifiers_are_uuid4_strings_in_canonical_form() -> None:
    ids = [entropy.new_identifier() for _ in range(1000)]
    for i in ids:
        u = uuid.UUID(i)
        assert str(u) == i
        assert u.version == 4 and u.variant == uuid.RFC_4122
    assert len(set(ids)) == 1000


def test_serials_are_positive_16_octet_values_from_the_pool() -> None:
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(0 < s < 2**127 for s in serials)
    # 127 random bits: about half have the top remaining bit set.
    assert 800 < sum(s >> 126 for s in serials) < 1200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_unread_bytes() -> None:
    entropy.random_bytes(16)  # the parent has unread bytes in its buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(write, entropy.random_bytes(16))
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != entropy.random_bytes(16)  # the parent's next bytes


#: Random values read elsewhere than service/entropy.py, each with its reason. Serials,
#: identifiers, key IDs and the salts and IVs of exports all come from service.entropy.
OTHER_RANDOMNESS = {
    ("hsm/export.py", "os.urandom"): "the AES-GCM IV of a sealed blob; hsm/ never imports service/",
    ("hsm/conformance.py", "os.urandom"): "a probe key's CKA_ID; hsm/ never imports service/",
    ("service/client/retry.py", "random.uniform"): "retry jitter: neither a secret nor an id",
}
_RANDOM_MODULES = {"secrets", "random"}
_RANDOM_FUNCTIONS = {"os.urandom", "os.getrandom", "uuid.uuid1", "uuid.uuid4"}


def _randomness_reads(path: Path) -> set[str]:
    """``module.function`` for every randomness source ``path`` reads (or imports from)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = f"{node.value.id}.{node.attr}"
            if node.value.id in _RANDOM_MODULES or name in _RANDOM_FUNCTIONS:
                found.add(name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if node.module in _RANDOM_MODULES or name in _RANDOM_FUNCTIONS:
                    found.add(name)
    return found


def test_randomness_is_read_only_through_service_entropy() -> None:
    reads = {(relative(path), name)
             for path in python_files("hsm", "service",
                                      skip=("service/gen", "service/entropy.py"))
             for name in _randomness_reads(path)}
    assert reads == set(OTHER_RANDOMNESS)


@pytest.mark.parametrize(("code", "reads"), [
    ("import os\na = os.urandom(4)", {"os.urandom"}),
    ("import secrets\nb = secrets.token_hex(4)", {"secrets.token_hex"}),
    ("import uuid\nc = uuid.uuid4()", {"uuid.uuid4"}),
    ("from random import choice", {"random.choice"}),
    ("import os, uuid\nd = os.getpid(), uuid.UUID(int=1)", set()),
])
def test_the_randomness_scan_sees_each_form(tmp_path: Path, code: str, reads: set[str]) -> None:
    (tmp_path / "m.py").write_text(code + "\n")
    assert _randomness_reads(tmp_path / "m.py") == reads

"""audit.chain on its own: RFC 6962 tree hashing, proofs and their RFC 9162 verification."""

from __future__ import annotations

import hashlib

import pytest

from audit import chain


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return chain.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


LEAVES = [chain.leaf_hash(f"entry {i}".encode()) for i in range(40)]


def test_leaf_and_node_hashing_use_rfc6962_prefixes() -> None:
    assert chain.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        chain.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert (
        chain.chain_hash(chain.GENESIS, b"c" * 32) == hashlib.sha256(bytes(32) + b"c" * 32).digest()
    )


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert chain.MerkleTree([]).root() == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 40])
def test_root_matches_the_rfc_definition(size: int) -> None:
    assert chain.MerkleTree(LEAVES[:size]).root() == reference_root(LEAVES[:size])


def test_every_inclusion_proof_verifies_and_a_wrong_leaf_or_index_does_not() -> None:
    for size in range(1, 41):
        tree = chain.MerkleTree(LEAVES[:size])
        root = tree.root()
        for index in range(size):
            proof = tree.inclusion_proof(index)
            assert chain.verify_inclusion(LEAVES[index], index, size, proof, root)
            assert not chain.verify_inclusion(b"\x00" * 32, index, size, proof, root)
            if size > 1:
                other = (index + 1) % size
                assert not chain.verify_inclusion(LEAVES[index], other, size, proof, root)


def test_every_consistency_proof_verifies_and_a_changed_history_does_not() -> None:
    for new in range(1, 41):
        tree = chain.MerkleTree(LEAVES[:new])
        for old in range(1, new + 1):
            proof = tree.consistency_proof(old)
            assert chain.verify_consistency(old, new, tree.root(old), tree.root(), proof)
            if old < new:
                rewritten = chain.MerkleTree([b"\x07" * 32, *LEAVES[1:new]])
                assert not chain.verify_consistency(
                    old, new, tree.root(old), rewritten.root(), proof
                )


def test_known_proof_shape_for_seven_leaves() -> None:
    # RFC 9162 figure: the path of leaf 3 (d) in a 7-leaf tree is c, (a,b), (e,f,g).
    tree = chain.MerkleTree(LEAVES[:7])
    assert tree.inclusion_proof(3) == [
        LEAVES[2],
        chain.node_hash(LEAVES[0], LEAVES[1]),
        chain.node_hash(chain.node_hash(LEAVES[4], LEAVES[5]), LEAVES[6]),
    ]


def test_incremental_nodes_equal_a_tree_built_at_once() -> None:
    store: dict[tuple[int, int], bytes] = {}
    size = 0
    for step in (3, 1, 4, 1, 5, 9, 2, 6):
        needed = chain.old_nodes_needed(size, size + step)
        assert all(key in store for key in needed)
        for level, index, digest in chain.new_perfect_nodes(
            size, LEAVES[size : size + step], lambda lv, ix: store[(lv, ix)]
        ):
            store[(level, index)] = digest
        size += step
        assert chain.tree_root(size, lambda lv, ix: store[(lv, ix)]) == reference_root(
            LEAVES[:size]
        )


def test_entries_are_canonical_json() -> None:
    entry = chain.make_entry(
        seq=1,
        at="2026-11-29T11:00:00.000000Z",
        actor_role="system",
        actor_id="",
        action="a.b.c",
        subject="",
        dataset="",
        payload={"b": 1, "a": "é"},
    )
    assert (
        chain.encode_entry(entry)
        == (
            '{"action":"a.b.c","actor":{"id":"","role":"system"},"at":"2026-11-29T11:00:00.000000Z",'
            '"dataset":"","payload":{"a":"é","b":1},"seq":1,"subject":""}'
        ).encode()
    )
    with pytest.raises(ValueError):
        chain.encode_entry({"x": float("nan")})


def test_checkpoint_signatures_are_ed25519_over_the_note() -> None:
    from Crypto.PublicKey import ECC

    key = ECC.generate(curve="ed25519")
    body = chain.checkpoint_body(size=3, root=b"r" * 32, chain_head=b"h" * 32, timestamp="t")
    assert body.decode().splitlines()[:2] == ["cleanroom-audit/v1", "3"]
    signature = chain.sign(key, body)
    assert chain.signature_is_valid(key.public_key(), body, signature)
    assert not chain.signature_is_valid(
        key.public_key(), body.replace(b"\n3\n", b"\n4\n"), signature
    )
    other = ECC.generate(curve="ed25519")
    assert not chain.signature_is_valid(other.public_key(), body, signature)


@pytest.mark.parametrize("size", [0, 1, 5, 65536, 65537, 140000])
def test_a_tree_built_block_by_block_equals_one_built_at_once(size: int) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    builder = chain.TreeBuilder()
    for start in range(0, size, 30000):  # arrivals not aligned to blocks
        builder.add(leaves[start : start + 30000])
    built = chain.MerkleTree(blobs=builder.finish())
    whole = chain.MerkleTree(leaves)
    assert built.size == size
    assert [b"".join(level) for level in whole.levels if level] == [
        b for b in (built.blobs or []) if b
    ] or size == 0
    assert built.root() == whole.root()
    if size:
        assert built.inclusion_proof(size - 1) == whole.inclusion_proof(size - 1)


PARALLEL_SCRIPT = r"""
import json, multiprocessing, sys
from Crypto.PublicKey import ECC
from audit import chain

key = ECC.generate(curve="ed25519")
size = 140000
entries = [b'{"n":%d}' % i for i in range(size)]
leaves = [chain.leaf_hash(e) for e in entries]
previous, rows = chain.GENESIS, []
for i, (entry, leaf) in enumerate(zip(entries, leaves)):
    current = chain.chain_hash(previous, leaf)
    rows.append((i + 1, entry, previous.hex(), current.hex()))
    previous = current
tree = chain.MerkleTree(leaves)
checkpoints = []
for cp_size in (70000, size):
    head = bytes.fromhex(rows[cp_size - 1][3])
    body = chain.checkpoint_body(size=cp_size, root=tree.root(cp_size), chain_head=head, timestamp="t")
    checkpoints.append(chain.Checkpoint(cp_size, tree.root(cp_size), head, "t", chain.sign(key, body), chain.key_id(key.public_key())))
out = []
for tampered in (None, 3, 100000):
    data = list(rows)
    if tampered:
        seq, entry, prev, digest = data[tampered - 1]
        data[tampered - 1] = (seq, entry + b" ", prev, digest)
    out.append([
        chain.verify_log(chain.columns_of(iter(data)), checkpoints, key.public_key(), parallel=p).as_dict()
        for p in (False, True)
    ])

def broken():
    yield from chain.columns_of(iter(rows[:70000]))
    raise ValueError("the export ends mid-line")

try:
    chain.verify_log(broken(), checkpoints, key.public_key(), parallel=True)
except ValueError:
    pass
print(json.dumps({"reports": out, "children": len(multiprocessing.active_children()),
                  "usable": chain._ParallelTree.usable()}))
"""


def test_parallel_verification_reports_exactly_what_sequential_does(tmp_path) -> None:
    """Run in a fresh single-threaded interpreter, as the command-line verifier is."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(chain.__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", PARALLEL_SCRIPT],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["usable"] is True and data["children"] == 0  # no child left behind on an error
    for (sequential, parallel), tampered in zip(data["reports"], (None, 3, 100000), strict=True):
        assert sequential == parallel
        assert sequential["first_bad_entry"] == tampered

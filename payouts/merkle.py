"""Merkle tree over a settlement's (contributor, amount) lines, and inclusion proofs.

Leaves and inner nodes are domain-separated (0x00 / 0x01 prefixes, as in RFC 6962)
so a leaf can never pass for a node. An odd node at the end of a level is promoted
unchanged. The tree is built in chunks of ``CHUNK`` leaves (sorted by contributor
pk): a settlement stores the chunk roots, so a proof needs only one chunk's lines
re-read from the ledger plus the stored roots; the verifier does not care about
the shape, it folds the sibling path. No Django here: a contributor verifies a proof
offline with ``python -m payouts.merkle proof.json``.

>>> leaves = [leaf_hash(settlement=1, contributor=pk, amount=10 * pk, currency="EUR") for pk in range(1, 6)]
>>> root = tree_root(leaves)
>>> all(proof_verify(leaf=leaves[i], proof=tree_proof(leaves, i), root=root) for i in range(5))
True
>>> proof_verify(leaf=leaves[0], proof=tree_proof(leaves, 1), root=root)
False
"""

from __future__ import annotations

import hashlib
from typing import Any

CHUNK = 4096


def leaf_hash(*, settlement: int, contributor: int, amount: int, currency: str) -> bytes:
    data = f"cleanroom-settlement-line:{settlement}:{contributor}:{amount}:{currency}"
    return hashlib.sha256(b"\x00" + data.encode()).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    out = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        out.append(level[-1])
    return out


def tree_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = leaves
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def tree_proof(leaves: list[bytes], index: int) -> list[dict[str, str]]:
    """Sibling path from leaf `index` to the root: [{"hash": hex, "side": "left"|"right"}]."""
    proof: list[dict[str, str]] = []
    level = leaves
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(
                {"hash": level[sibling].hex(), "side": "left" if sibling < index else "right"}
            )
        level = _next_level(level)
        index //= 2
    return proof


def proof_verify(*, leaf: bytes, proof: list[dict[str, str]], root: bytes) -> bool:
    node = leaf
    for step in proof:
        sibling = bytes.fromhex(step["hash"])
        node = node_hash(sibling, node) if step["side"] == "left" else node_hash(node, sibling)
    return node == root


def chunked_roots(leaves: list[bytes], chunk: int = CHUNK) -> list[bytes]:
    return [tree_root(leaves[i : i + chunk]) for i in range(0, len(leaves), chunk)]


def proof_check(document: dict[str, Any]) -> tuple[bool, str]:
    """Check a proof as served in GET /api/v1/me/earnings/ (``settlements[i]``), offline.

    The leaf is recomputed from its fields (so the amount shown is the amount committed),
    then the sibling path is folded up to the published root.
    """
    leaf = document["leaf"]
    recomputed = leaf_hash(
        settlement=int(leaf["settlement"]),
        contributor=int(leaf["contributor"]),
        amount=int(leaf["amount_micro"]),
        currency=str(leaf["currency"]),
    )
    if recomputed.hex() != leaf["hash"]:
        return False, "the leaf hash does not match its fields"
    if not proof_verify(
        leaf=recomputed, proof=document["proof"], root=bytes.fromhex(document["merkle_root"])
    ):
        return False, "the path does not lead to the settlement's Merkle root"
    return True, (
        f"line ({leaf['contributor']}, {leaf['amount_micro']} micro-{leaf['currency']}) is in "
        f"settlement {leaf['settlement']} with root {document['merkle_root']}"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m payouts.merkle proof.json`: verify a settlement proof with no server."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m payouts.merkle PROOF.json")
        return 2
    with open(args[0], encoding="utf-8") as handle:
        ok, message = proof_check(json.load(handle))
    print(("OK: " if ok else "FAILED: ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

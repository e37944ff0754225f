"""The audit log's cryptography, with no Django: an auditor runs it on their own machine.

Two layers of tamper evidence, as Certificate Transparency does it (RFC 9162):

* **Hash chain.** Each event is encoded as a canonical JSON *entry* (sorted keys, no
  whitespace, UTF-8). ``leaf = SHA-256(0x00 || entry)`` and
  ``hash_n = SHA-256(hash_{n-1} || leaf_n)`` with ``hash_0`` thirty-two zero bytes. Editing,
  deleting, inserting or reordering an entry changes every later hash.
* **Merkle tree** over the same leaves with RFC 6962 hashing
  (``node = SHA-256(0x01 || left || right)``), and **signed checkpoints**: the tree size, its
  root, the chain head at that size and the time, signed with Ed25519. Someone who can write to
  the database can re-hash a forged chain, but cannot sign a checkpoint for it.

Trees are addressed by *perfect subtrees*: ``(level, index)`` is the root of the
``2**level`` leaves starting at ``index * 2**level``. Every hash in an inclusion or consistency
proof is a combination of perfect subtrees, so a store that keeps them (in memory here, in the
database in ``audit.models.AuditNode``) answers a proof with a handful of look-ups.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

GENESIS = bytes(32)
ORIGIN = "cleanroom-audit/v1"
_sha256 = hashlib.sha256

NodeGetter = Callable[[int, int], bytes]


# -- entries and hashes -------------------------------------------------------------------


def encode_entry(entry: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry: what is hashed, stored and exported verbatim."""
    return json.dumps(
        entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return _sha256(previous + leaf).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# -- trees from perfect subtrees ------------------------------------------------------------


def perfect_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All perfect subtree hashes: ``levels[l][i]`` is the node ``(l, i)``."""
    levels = [list(leaves)]
    current = levels[0]
    sha = _sha256
    while len(current) > 1:
        current = [
            sha(b"\x01" + a + b).digest()
            for a, b in zip(current[0::2], current[1::2], strict=False)
        ]  # an odd last node waits
        levels.append(current)
    return levels


def range_hash(start: int, end: int, node: NodeGetter) -> bytes:
    """MTH of leaves ``[start, end)`` where ``start`` is aligned as in RFC 6962's recursion."""
    size = end - start
    if size <= 0:
        raise ValueError("empty range")
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return node(level, start >> level)
    k = _largest_power_of_two_below(size)
    return node_hash(range_hash(start, start + k, node), range_hash(start + k, end, node))


def tree_root(size: int, node: NodeGetter) -> bytes:
    """The RFC 6962 root of the first ``size`` leaves (the empty tree hashes to SHA-256(''))."""
    if size == 0:
        return _sha256(b"").digest()
    return range_hash(0, size, node)


def inclusion_proof(index: int, size: int, node: NodeGetter) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]), leaf-to-root order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    # Walk down from the root, remembering the sibling at each split; reversed at the end.
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            proof.append(range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, node))
            start = start + k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, node: NodeGetter) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[0:new_size])."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == new_size:
        return []
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(range_hash(start, end, node))
            return
        k = _largest_power_of_two_below(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append(range_hash(start + k, end, node))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(range_hash(start, start + k, node))

    subproof(old_size, 0, new_size, True)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class MerkleTree:
    """An in-memory tree over a list of leaf hashes (for the verifiers and the bench).

    Levels are lists of hashes, or (from a tree built in another process) one bytes blob per
    level of 32-byte hashes."""

    def __init__(
        self, leaves: Sequence[bytes] = (), *, blobs: Sequence[bytes] | None = None
    ) -> None:
        self.blobs = list(blobs) if blobs is not None else None
        if self.blobs is not None:
            self.levels: list[list[bytes]] = []
            self.size = len(self.blobs[0]) // 32 if self.blobs else 0
        else:
            self.levels = perfect_levels(leaves)
            self.size = len(leaves)

    def node(self, level: int, index: int) -> bytes:
        if self.blobs is not None:
            if index < 0 or 32 * (index + 1) > len(self.blobs[level]):
                raise IndexError(f"no node {level}/{index}")
            return self.blobs[level][32 * index : 32 * index + 32]
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.node)


BLOCK = 1 << 16  # leaves per aligned block when a tree is built as leaves arrive


class TreeBuilder:
    """Perfect subtree hashes built block by block (aligned 2**16 leaves) as leaves arrive,
    so a tree can be built beside the chain, in another process."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[] for _ in range(17)]
        self.pending: list[bytes] = []

    def add(self, leaves: Sequence[bytes]) -> None:
        self.pending.extend(leaves)
        while len(self.pending) >= BLOCK:
            self._block(self.pending[:BLOCK])
            del self.pending[:BLOCK]

    def _block(self, block: Sequence[bytes]) -> None:
        for level, nodes in enumerate(perfect_levels(block)):
            self.levels[level].extend(nodes)

    def finish(self) -> list[bytes]:
        """One blob per level (level 0 = the leaves), as `MerkleTree(blobs=...)` takes."""
        if self.pending:
            self._block(self.pending)
            self.pending = []
        levels = [nodes for nodes in self.levels[:16]]
        levels.extend(perfect_levels(self.levels[16]))  # block roots and everything above
        while len(levels) > 1 and not levels[-1]:
            levels.pop()
        return [b"".join(nodes) for nodes in levels]


def _tree_worker(connection: Any) -> None:
    """Child process: build the tree from leaf blobs until an empty message, send it back."""
    builder = TreeBuilder()
    while blob := connection.recv_bytes():
        builder.add([blob[i : i + 32] for i in range(0, len(blob), 32)])
    blobs = builder.finish()
    connection.send(len(blobs))
    for blob in blobs:
        connection.send_bytes(blob)
    connection.close()


class _ParallelTree:
    """Builds the Merkle tree in a forked process while this one hashes the chain (two cores,
    or a second share of a busy machine). Falls back to building it here if that fails."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_tree_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def add(self, leaves: Sequence[bytes]) -> None:
        if leaves:
            self.connection.send_bytes(b"".join(leaves))

    def finish(self, timeout: float = 600) -> MerkleTree:
        self.connection.send_bytes(b"")
        if not self.connection.poll(timeout):
            raise OSError("the tree process did not answer")
        count = self.connection.recv()
        blobs = [self.connection.recv_bytes() for _ in range(count)]
        self.close()
        return MerkleTree(blobs=blobs)

    def close(self) -> None:
        """Stop the child whatever state it is in (also on an error in the caller)."""
        if self.connection.closed:
            return
        self.connection.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)

    @staticmethod
    def usable() -> bool:
        """Forking is only safe from a single-threaded process (a CLI, a management command):
        a lock held by another thread at fork time would never be released in the child."""
        import threading

        return threading.active_count() == 1


def new_perfect_nodes(
    old_size: int, new_leaves: Sequence[bytes], old_node: NodeGetter
) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees completed by appending ``new_leaves`` to a tree of ``old_size``.

    ``old_node`` answers for subtrees that were already complete (at most one per level is
    asked for). Returned as ``(level, index, hash)``, level 0 first.
    """
    new_size = old_size + len(new_leaves)
    out: list[tuple[int, int, bytes]] = [
        (0, old_size + i, leaf) for i, leaf in enumerate(new_leaves)
    ]
    fresh: dict[tuple[int, int], bytes] = {(0, old_size + i): h for i, h in enumerate(new_leaves)}
    level = 1
    while (new_size >> level) > 0:
        first = old_size >> level  # nodes below this index were complete before
        last = new_size >> level
        for index in range(first, last):
            children = []
            for child in (2 * index, 2 * index + 1):
                key = (level - 1, child)
                children.append(fresh[key] if key in fresh else old_node(level - 1, child))
            h = node_hash(children[0], children[1])
            fresh[(level, index)] = h
            out.append((level, index, h))
        level += 1
    return out


def old_nodes_needed(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Which already-complete subtrees `new_perfect_nodes` will ask for."""
    needed = []
    level = 1
    while (new_size >> level) > 0:
        first, last = old_size >> level, new_size >> level
        if first < last:
            left = 2 * first
            if left < (old_size >> (level - 1)):
                needed.append((level - 1, left))
        level += 1
    return needed


# -- signed checkpoints ---------------------------------------------------------------------


def checkpoint_body(*, size: int, root: bytes, chain_head: bytes, timestamp: str) -> bytes:
    """The signed text, in the shape of a C2SP tlog checkpoint plus two extension lines."""
    return (
        f"{ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n"
        f"chain {chain_head.hex()}\ntime {timestamp}\n"
    ).encode()


def load_public_key(pem: str | bytes) -> Any:
    from Crypto.PublicKey import ECC

    key = ECC.import_key(pem)
    if key.curve.lower() not in ("ed25519", "ed25519 (rfc8032)"):
        raise ValueError("the audit key is not an Ed25519 key")
    return key.public_key() if key.has_private() else key


def key_id(public_key: Any) -> str:
    """A short fingerprint of the public key (SHA-256 of its DER encoding)."""
    der = public_key.export_key(format="DER")
    return hashlib.sha256(der).hexdigest()[:16]


def sign(private_key: Any, body: bytes) -> bytes:
    from Crypto.Signature import eddsa

    return bytes(eddsa.new(private_key, "rfc8032").sign(body))


def signature_is_valid(public_key: Any, body: bytes, signature: bytes) -> bool:
    from Crypto.Signature import eddsa

    try:
        eddsa.new(public_key, "rfc8032").verify(body, signature)
    except ValueError:
        return False
    return True


# -- verification ---------------------------------------------------------------------------


@dataclass
class Checkpoint:
    size: int
    root: bytes
    chain_head: bytes
    timestamp: str
    signature: bytes
    key_id: str = ""

    @property
    def body(self) -> bytes:
        return checkpoint_body(
            size=self.size, root=self.root, chain_head=self.chain_head, timestamp=self.timestamp
        )


@dataclass
class Report:
    ok: bool
    entries: int
    head: str | None
    first_bad_entry: int | None = None
    reason: str = ""
    tree_root: str | None = None
    checkpoints_checked: int = 0
    latest_checkpoint: int | None = None
    unsigned_tail: int = 0
    problems: list[str] = field(default_factory=list)
    checkpoint_every: int | None = None  # the interval the tail was held to (None: not checked)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "first_bad_entry": self.first_bad_entry,
            "reason": self.reason,
            "tree_root": self.tree_root,
            "checkpoints_checked": self.checkpoints_checked,
            "latest_checkpoint": self.latest_checkpoint,
            "unsigned_tail": self.unsigned_tail,
            "problems": self.problems,
            "checkpoint_every": self.checkpoint_every,
        }

    def hold_tail_to(self, checkpoint_every: int | None) -> Report:
        """Report more entries after the newest checkpoint than the checkpoint interval as a
        problem.

        Checkpoints are signed every ``checkpoint_every`` entries (and periodically), so a
        longer tail means signing has stopped: those entries could be rewritten by anyone
        with database access without a signature noticing. The log then does not verify,
        and its first bad entry is the first entry no checkpoint covers (entries under a
        checkpoint that fails are reported by that checkpoint's own problem)."""
        self.checkpoint_every = checkpoint_every
        newest = self.latest_checkpoint or 0
        tail = self.entries - newest
        if checkpoint_every is None or tail <= checkpoint_every:
            return self
        first = newest + 1
        why = (
            f"entries {first}..{self.entries} ({tail}) are not covered by any signed "
            f"checkpoint, more than the checkpoint interval of {checkpoint_every}: "
            "checkpoints have stopped being signed"
        )
        self.problems.append(why)
        if self.first_bad_entry is None or first < self.first_bad_entry:
            self.first_bad_entry, self.reason = first, why
        self.ok = False
        return self


# (seqs, entries, stored prev hashes, stored hashes); hashes as hex str or ASCII bytes.
Columns = tuple[Sequence[int], Sequence[bytes], Sequence[Any], Sequence[Any]]


def _joined(hexes: Sequence[Any]) -> str:
    if hexes and isinstance(hexes[0], bytes):
        return b"".join(hexes).decode("ascii", errors="replace")
    return "".join(hexes)


def _text(value: Any) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)


def columns_of(rows: Iterable[tuple[int, bytes, str, str]], size: int = 65536) -> Iterator[Columns]:
    """Row tuples ``(seq, entry, prev_hash_hex, hash_hex)`` regrouped as column chunks."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield (
            [r[0] for r in chunk],
            [r[1] for r in chunk],
            [r[2] for r in chunk],
            [r[3] for r in chunk],
        )


def verify_log(
    chunks: Iterable[Columns],
    checkpoints: Iterable[Checkpoint],
    public_key: Any,
    *,
    witness_leaf: Callable[[int], bytes | None] | None = None,
    parallel: bool = False,
) -> Report:
    """Recompute the chain and the tree and check every checkpoint.

    ``parallel`` builds the tree in a forked process (for command-line use, not inside a
    threaded server).

    ``chunks`` are consecutive column chunks ``(seqs, entries, stored_prev_hash_hex,
    stored_hash_hex)`` in seq order (see `columns_of`). ``witness_leaf(i)`` optionally returns
    the leaf hash recorded when leaf ``i`` (0-based) was first checkpointed; it is trusted only
    if those witnesses rebuild the signed root, and then it names the exact first altered
    entry in a range that fails its checkpoint.
    The first bad entry is the smallest seq that is altered, missing, or not covered by a
    valid signature where one was expected.
    """
    helper: _ParallelTree | None = None
    if parallel and _ParallelTree.usable():
        try:
            helper = _ParallelTree()
        except (OSError, ValueError):
            helper = None
    try:
        return _verify(chunks, checkpoints, public_key, witness_leaf, helper)
    finally:
        if helper is not None:
            helper.close()


def _verify(
    chunks: Iterable[Columns],
    checkpoints: Iterable[Checkpoint],
    public_key: Any,
    witness_leaf: Callable[[int], bytes | None] | None,
    helper: _ParallelTree | None,
) -> Report:
    sha = _sha256
    previous = GENESIS
    leaves: list[bytes] = []
    heads: list[bytes] = []
    bad: int | None = None
    reason = ""
    problems: list[str] = []
    count = 0
    # Whole chunks at a time: comprehensions, joins and string comparisons run in C.
    for seqs, entries, stored_prevs, stored_hashes in chunks:
        size = len(seqs)
        count += size
        if bad is not None or not size:
            continue  # only counting the rest
        first = len(leaves) + 1
        chunk_leaves = [sha(b"\x00" + e).digest() for e in entries]
        p = previous
        chunk_heads = [p := sha(p + leaf).digest() for leaf in chunk_leaves]
        joined = b"".join(chunk_heads).hex()
        expected_prevs = previous.hex() + joined[:-64]
        if (
            _joined(stored_hashes) == joined
            and _joined(stored_prevs) == expected_prevs
            and list(seqs) == list(range(first, first + size))
        ):
            leaves.extend(chunk_leaves)
            heads.extend(chunk_heads)
            previous = p
            if helper is not None:
                helper.add(chunk_leaves)
            continue
        for i in range(size):
            seq = first + i
            if seqs[i] != seq:
                bad = seq
                reason = f"entry {seq} is missing or out of order (found {seqs[i]} in its place)"
            elif _text(stored_prevs[i]) != expected_prevs[64 * i : 64 * i + 64]:
                bad, reason = seq, f"entry {seq}: its previous hash does not match entry {seq - 1}"
            elif _text(stored_hashes[i]) != joined[64 * i : 64 * i + 64]:
                bad, reason = seq, f"entry {seq}: its content does not match its hash"
            if bad is not None:
                leaves.extend(chunk_leaves[:i])
                heads.extend(chunk_heads[:i])
                if helper is not None:
                    helper.add(chunk_leaves[:i])
                break
    valid_size = len(leaves)  # entries whose chain checks out
    tree: MerkleTree | None = None
    if helper is not None:
        try:
            tree = helper.finish()
        except (OSError, EOFError, ValueError):
            tree = None
    if tree is None or tree.size != valid_size:
        tree = MerkleTree(leaves)

    def mark(position: int, why: str) -> None:
        nonlocal bad, reason
        problems.append(why)
        if bad is None or position < bad:
            bad, reason = position, why

    checked = 0
    last_good = 0
    latest: int | None = None
    expected_key = key_id(public_key)
    for cp in sorted(checkpoints, key=lambda c: c.size):
        checked += 1
        latest = cp.size if latest is None else max(latest, cp.size)
        if cp.key_id and cp.key_id != expected_key:
            mark(last_good + 1, f"checkpoint {cp.size} is signed by another key ({cp.key_id})")
            continue
        if not signature_is_valid(public_key, cp.body, cp.signature):
            mark(last_good + 1, f"checkpoint {cp.size} has an invalid signature")
            continue
        if (
            cp.size <= valid_size
            and tree.root(cp.size) == cp.root
            and heads[cp.size - 1] == cp.chain_head
        ):
            last_good = max(last_good, cp.size)
            continue
        position = _locate(leaves, cp, witness_leaf)
        if position is not None:
            mark(position, f"entry {position} differs from what checkpoint {cp.size} signed")
        elif cp.size > valid_size:
            if bad is None:
                mark(valid_size + 1, f"checkpoint {cp.size} signs entries the log no longer has")
        else:
            mark(
                last_good + 1,
                f"entries {last_good + 1}..{cp.size} differ from what checkpoint {cp.size} signed",
            )
    ok = bad is None
    return Report(
        ok=ok,
        entries=count,
        head=heads[-1].hex() if heads else None,
        first_bad_entry=bad,
        reason=reason if not ok else "",
        tree_root=tree.root().hex(),
        checkpoints_checked=checked,
        latest_checkpoint=latest,
        unsigned_tail=valid_size - last_good,
        problems=problems,
    )


def _locate(
    leaves: Sequence[bytes],
    cp: Checkpoint,
    witness_leaf: Callable[[int], bytes | None] | None,
) -> int | None:
    """The exact first entry that differs from what ``cp`` signed, when the leaf hashes
    witnessed at checkpoint time rebuild its signed root (so they are the signed leaves)."""
    if witness_leaf is None:
        return None
    witnesses = [witness_leaf(i) for i in range(cp.size)]
    if any(w is None for w in witnesses):
        return None
    signed = [w for w in witnesses if w is not None]
    if MerkleTree(signed).root() != cp.root:
        return None
    for i in range(min(cp.size, len(leaves))):
        if signed[i] != leaves[i]:
            return i + 1
    return None


def checkpoint_from_dict(data: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        size=int(data["tree_size"]),
        root=bytes.fromhex(data["root"]),
        chain_head=bytes.fromhex(data["chain_head"]),
        timestamp=str(data["timestamp"]),
        signature=base64.b64decode(data["signature"]),
        key_id=str(data.get("key_id", "")),
    )


def checkpoint_to_dict(cp: Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": cp.size,
        "root": cp.root.hex(),
        "chain_head": cp.chain_head.hex(),
        "timestamp": cp.timestamp,
        "signature": base64.b64encode(cp.signature).decode(),
        "key_id": cp.key_id,
    }


# -- the entry of one event -----------------------------------------------------------------


def format_time(moment: Any) -> str:
    """An aware datetime as the entry writes it: UTC, microseconds, ``Z``."""
    from datetime import UTC

    return str(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def make_entry(
    *,
    seq: int,
    at: str,
    actor_role: str,
    actor_id: str,
    action: str,
    subject: str,
    dataset: str,
    payload: Any,
) -> dict[str, Any]:
    """The fields an entry commits to (the hashes are computed over its encoding)."""
    return {
        "seq": seq,
        "at": at,
        "actor": {"role": actor_role, "id": actor_id},
        "action": action,
        "subject": subject,
        "dataset": dataset,
        "payload": payload,
    }

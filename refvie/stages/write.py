"""Stage 6, write: accepted rows into `quadruplets`, rejected rows into `rejects` (with their scores), in
batched idempotent upserts (keys are Lance primary keys, so a second writer's insert of the same key is retried as
an update).

Two builds on one lake may list the same pending pairs. Once the tables have moved under this writer since its
pairs were listed, it drops from every batch the pairs another build has already settled;
when another writer committed while this one was writing, it settles any pair of the batch found in both tables as
built (the reject goes: a near-duplicate kept is no loss, a pair counted twice breaks `in = accepted + rejected`).

With parallel writes (`refvie/stages/fragments.py`) the rows arrive already written as uncommitted fragments: this
stage then decides the same way and commits them instead of upserting.

Near-duplicates are caught here: a row whose (instruction, target) embedding is within `duplicate_cosine` of
one already written is rejected as `duplicate` (`DuplicateBank`: exact, a projected prefilter, then the full keys;
~140 bytes a row in memory, the full keys in a temporary file)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lake import Lake
from lake.embed import l2_normalise
from lake.fragments import commit_fragments, drop_duplicate_keys, parse_fragments
from lake.memory import trim_heap
from lake.preempted import retry_preempted
from lake.splits import DEFAULT_FRACTIONS, split_for
from lake.sql import literal
from lake.taxonomy import EDIT_TYPES, EditType
from refvie.stages.batch import missing
from refvie.stages.dedup import DuplicateBank
from refvie.stages.embed import vector_from

STAGES = ("decode", "classify", "localise", "scaffold", "filter", "package", "embed", "dedup", "write")
WRITTEN = ("quadruplets", "rejects")


# commits that change rows (a commit whose transaction cannot be read counts as one: the safe side)
_ROW_CHANGES = {"Append", "Overwrite", "Delete", "Update", "Merge", "DataReplacement", "Restore", "unknown"}


def quadruplet_id(pair_id: str) -> str:
    return f"q-{pair_id}"


def operations(dataset, first: int, last: int) -> list[str]:
    """The operation name of each of the dataset's commits `first`..`last`. pylance cannot build the Python object
    of a Rewrite that remapped an index (`LanceOperation.RewrittenIndex` misses arguments, pylance 14): such a
    commit is a compaction on an indexed table, named "Rewrite"."""
    names = []
    for version in range(first, last + 1):
        try:
            transaction = dataset.read_transaction(version)
        except TypeError as e:
            if "RewrittenIndex" not in str(e):
                raise
            names.append("Rewrite")
            continue
        names.append(type(transaction.operation).__name__ if transaction is not None else "unknown")
    return names


@dataclass
class Write:
    db: Lake
    pipeline_version: str = "refvie-0.1"
    duplicate_cosine: float = 0.995
    split_fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    bank: DuplicateBank | None = None
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    rejected_by_stage: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    nodes: Counter = field(default_factory=Counter)
    write_nodes: Counter = field(default_factory=Counter)  # rows per node whose workers wrote their bytes
    repaired: int = 0  # rows under a key another row already had, removed at setup (see drop_duplicate_keys)
    taken: int = 0  # pairs another build settled first
    # the tables' versions when the pending pairs were listed (None: unknown, check every batch); from then on,
    # what they would be had only this writer written
    expected_versions: dict[str, int] | None = None
    shared: bool = False  # another writer has committed since the listing: check every batch from now on
    # every `compact_every` batches that wrote to a table, the small fragments written since its last compaction (one
    # per batch) are merged into one: each upsert's key join and each manifest read stop growing with the number of
    # batches ever written, and each row is rewritten once (merging into fixed-size fragments instead rewrote the
    # growing last fragment every time: 2.5 rewrites a row on average, 1 in the first thousand — a per-row cost that
    # grew with the lake). `finish()` merges the build's fragments into fragments of up to `build_rows` rows.
    compact_every: int = 32
    build_rows: int = 65536
    # from `key_index_rows` rows, each upsert finds its keys through a BTree index on quadruplets' `id` instead of
    # joining the batch with the whole id column (a 32-row upsert, `bench/upsert_bench.py`: 0.8x at 2k-8k rows,
    # 1.2x at 33k-131k, 1.7x at 262k); the index is refreshed at a compaction once a quarter more rows than it
    # covers have been written (each row is indexed a bounded number of times, and the unindexed part a join
    # still scans stays under a fifth)
    key_index_rows: int = 32768
    _unmerged_rows: Counter = field(default_factory=Counter)  # rows written since the table's last compaction
    _merged_upto: dict[str, int] = field(default_factory=dict)  # highest fragment id at the last compaction
    _writes: Counter = field(default_factory=Counter)

    def setup(self) -> None:
        """The bank of what the lake holds, read in batches (a whole read of the embeddings is 2.5 KB a row), after
        removing second rows under one key (two builds with parallel writes appending one pair at once)."""
        self.repaired = drop_duplicate_keys(self.db, "quadruplets")
        dataset = self.db.dataset("quadruplets")
        self.bank = DuplicateBank(capacity=max(1024, 2 * dataset.count_rows()))
        for batch in dataset.to_batches(columns=["pair_id", "instruction_emb", "target_emb"], batch_size=8192,
                                        filter="instruction_emb IS NOT NULL AND target_emb IS NOT NULL"):
            if batch.num_rows:
                self.bank.add(_keys(batch["instruction_emb"].to_pylist(), batch["target_emb"].to_pylist()),
                              batch["pair_id"].to_pylist())

    def __call__(self, batch: dict) -> dict[str, int]:
        if self.bank is None:
            self.setup()
        n, taken_before = len(batch["pair_id"]), self.taken
        for name, values in batch.items():
            if name.startswith("t_"):
                self.seconds[name[2:]] += float(np.sum(values))
        for node in batch.get("node", []):
            self.nodes[str(node)] += 1
        for node in batch.get("write_node", []):
            self.write_nodes[str(node)] += 1
        before = self._versions()
        self.shared = self.shared or before != self.expected_versions
        fragments = batch.get("fragments_json")  # a build with parallel writes: the rows are written already
        written_ids = [quadruplet_id(str(p)) for p, r in zip(batch["pair_id"], batch["reject_reason"], strict=True)
                       if missing(r)] if fragments is not None else []
        if self.shared:
            batch = self._drop_settled(batch)
            n = len(batch["pair_id"])
        started = time.perf_counter()
        self._dedup(batch)
        self.seconds["dedup"] += time.perf_counter() - started
        started = time.perf_counter()
        rows, rejects = [], []
        for i in range(n):
            if missing(batch["reject_reason"][i]):
                rows.append(quadruplet_row(batch, i, self.pipeline_version, self.split_fractions)
                            if fragments is None else quadruplet_id(str(batch["pair_id"][i])))
            else:
                rejects.append(dict(stage=str(batch["reject_stage"][i]), input_ref=str(batch["pair_id"][i]),
                                    reason=str(batch["reject_reason"][i]), detail=_opt(batch["reject_detail"][i]),
                                    dataset=_opt(batch["dataset"][i]), scores=_opt(batch["scores_json"][i])))
                self.rejected[str(batch["reject_reason"][i])] += 1
                self.rejected_by_stage[str(batch["reject_stage"][i])] += 1
        commits = {"quadruplets": int(bool(rows)), "rejects": int(bool(rejects))}
        if fragments is not None:
            # near-duplicates and pairs another build settled leave the fragments again, in a second commit
            parsed = parse_fragments(list(fragments))
            if sum(f.physical_rows for f in parsed) != len(written_ids):
                raise RuntimeError("a write batch holds part of a worker's fragments: the driver must take the "
                                   "workers' blocks whole (iter_batches(batch_size=None))")
            committed = commit_fragments(self.db, "quadruplets", parsed,
                                         sorted(set(written_ids) - set(rows)))
            commits["quadruplets"] = len(committed.versions)
        elif rows:
            self.db.upsert("quadruplets", rows)
        self.accepted += len(rows)
        if rejects:
            self.db.reject_many(rejects)
        self.expected_versions = {t: before[t] + commits[t] for t in WRITTEN}
        if self._versions() != self.expected_versions:  # another writer committed while this one wrote
            if fragments is not None and rows:  # appends do not meet on keys as upserts do: keep one copy
                drop_duplicate_keys(self.db, "quadruplets", rows)
            rejects = self._settle_as_built([str(p) for p in batch["pair_id"]], rejects)
        for table, written in zip(WRITTEN, (rows, rejects), strict=True):
            self._writes[table] += bool(written)
            self._unmerged_rows[table] += len(written)
            if written and self._writes[table] % self.compact_every == 0:
                self._compact(table, self._unmerged_rows[table], only_new=True)
                self._unmerged_rows[table] = 0
        self.seconds["write"] += time.perf_counter() - started  # rows, upserts, settling, compaction
        return {"accepted": len(rows), "rejected": len(rejects), "taken": self.taken - taken_before}

    def finish(self) -> None:
        """At the end of a build: merge the fragments it wrote into fragments of up to `build_rows` rows (one more
        rewrite of each row, so a lake built in many runs is not left in thousands of small fragments)."""
        started = time.perf_counter()
        for table in WRITTEN:
            if self._writes[table]:
                self._compact(table, self.build_rows, only_new=False)
        self.seconds["write"] += time.perf_counter() - started

    def _compact(self, table: str, target_rows: int, only_new: bool) -> None:
        """Merge the table's small fragments into fragments of up to `target_rows` rows; with `only_new`, only bins
        holding a fragment written since the last compaction (older merged fragments are left as they are).
        Compaction commits a version of its own: expected, unless another writer committed meanwhile (then every
        later batch is checked, as after any foreign commit). Preempted by another build's compaction of the same
        fragments, it plans again on the newer version."""
        from lance.optimize import Compaction, CompactionOptions

        before = self.db.dataset(table).version
        floor = self._merged_upto.get(table, -1) if only_new else -1

        def plan_and_commit():  # against the latest version: another build may have compacted meanwhile
            dataset = self.db.dataset(table)
            plan = Compaction.plan(dataset, CompactionOptions(target_rows_per_fragment=max(1, target_rows)))
            tasks = [t for t in plan.tasks if max(f.id for f in t.fragments) > floor]
            if tasks:
                Compaction.commit(dataset, [t.execute(dataset) for t in tasks])
                trim_heap()  # the rewrite's buffers were freed on Lance's I/O threads: give their pages back

        retry_preempted(plan_and_commit)
        if table == "quadruplets":
            retry_preempted(self._refresh_key_index)
        latest = self.db.dataset(table)
        self._merged_upto[table] = max((f.fragment_id for f in latest.get_fragments()), default=-1)
        after = latest.version
        if self.expected_versions is None or before != self.expected_versions[table]:
            self.shared = True
            return
        # compaction commits a rewrite (and a fragment reservation): anything that changes rows is another writer's
        foreign = [op for op in operations(latest, before + 1, after) if op in _ROW_CHANGES]
        self.expected_versions[table] = before if foreign else after
        self.shared = self.shared or bool(foreign)

    def _refresh_key_index(self) -> None:
        dataset = self.db.dataset("quadruplets")
        index = next((ix["name"] for ix in dataset.list_indices() if ix["fields"] == ["id"]), None)
        if index is None:
            if dataset.count_rows() >= self.key_index_rows:
                dataset.create_scalar_index("id", "BTREE")
            return
        stats = dataset.stats.index_stats(index)
        if stats["num_unindexed_rows"] * 4 > stats["num_indexed_rows"]:
            dataset.optimize.optimize_indices(index_names=[index])

    def _versions(self) -> dict[str, int]:
        return {t: self.db.table(t).version for t in WRITTEN}

    def _settled(self, pair_ids: list[str]) -> tuple[set[str], set[str]]:
        """Of `pair_ids`, those with a quadruplet and those with a pipeline reject, as the lake has them now."""
        if not pair_ids:
            return set(), set()
        ids = ", ".join(literal(quadruplet_id(p)) for p in pair_ids)
        refs = ", ".join(literal(p) for p in pair_ids)
        stages = ", ".join(literal(s) for s in STAGES)
        built = self.db.read("quadruplets", columns=["pair_id"], where=f"id IN ({ids})")["pair_id"].to_pylist()
        rejected = self.db.read("rejects", columns=["input_ref"],
                                where=f"input_ref IN ({refs}) AND stage IN ({stages})")["input_ref"].to_pylist()
        return set(built), set(rejected)

    def _drop_settled(self, batch: dict) -> dict:
        built, rejected = self._settled([str(p) for p in batch["pair_id"]])
        keep = np.array([str(p) not in built | rejected for p in batch["pair_id"]], dtype=bool)
        self.taken += int((~keep).sum())
        return batch if keep.all() else {k: np.asarray(v)[keep] for k, v in batch.items()}

    def _settle_as_built(self, pair_ids: list[str], rejects: list[dict]) -> list[dict]:
        """Pairs of this batch found in both tables lose their reject; returns this writer's rejects that stand."""
        built, rejected = self._settled(pair_ids)
        both = built & rejected
        if not both:
            return rejects
        stages = ", ".join(literal(s) for s in STAGES)
        self.db.delete("rejects", f"input_ref IN ({', '.join(literal(p) for p in sorted(both))}) "
                                  f"AND stage IN ({stages})")
        standing = []
        for r in rejects:
            if r["input_ref"] in both:  # another build wrote this pair's quadruplet: it is theirs
                self.rejected[r["reason"]] -= 1
                self.rejected_by_stage[r["stage"]] -= 1
                self.taken += 1
            else:
                standing.append(r)
        self.rejected, self.rejected_by_stage = +self.rejected, +self.rejected_by_stage  # drop zero counts
        return standing

    def _dedup(self, batch: dict) -> None:
        alive = [i for i in range(len(batch["pair_id"])) if missing(batch["reject_reason"][i])]
        if not alive:
            return
        keys = _keys([vector_from(batch["instruction_emb"][i]) for i in alive],
                     [vector_from(batch["target_emb"][i]) for i in alive])
        duplicate = self.bank.check_and_add(keys, [str(batch["pair_id"][i]) for i in alive], self.duplicate_cosine)
        for i in np.asarray(alive)[duplicate]:
            batch["reject_stage"][i], batch["reject_reason"][i] = "dedup", "duplicate"
            batch["reject_detail"][i] = f"cosine >= {self.duplicate_cosine} with a quadruplet already written"


def quadruplet_row(batch: dict, i: int, pipeline_version: str, split_fractions: dict[str, float]) -> dict[str, Any]:
    """Row `i` of a packaged, embedded batch as a `quadruplets` row."""
    pair_id, edit_type = str(batch["pair_id"][i]), str(batch["edit_type"][i])
    scores = json.loads(_opt(batch["scores_json"][i]) or "{}")
    return dict(
        id=quadruplet_id(pair_id), pair_id=pair_id, dataset=str(batch["dataset"][i]), task=str(batch["task"][i]),
        edit_type=edit_type, edit_scope=EditType(edit_type).scope.value, instruction=str(batch["instruction"][i]),
        source_video=_opt(batch["source_bytes"][i]), target_video=_opt(batch["target_bytes"][i]),
        source_uri=_opt(batch["source_uri"][i]), target_uri=_opt(batch["target_uri"][i]),
        num_frames=_int(batch["num_frames"][i]), fps=_float(batch["fps"][i]), width=_int(batch["width"][i]),
        height=_int(batch["height"][i]), codec=_opt(batch["codec"][i]),
        reference_image=_opt(batch["reference_png"][i]), edit_mask=_opt(batch["edit_mask_png"][i]),
        thumb_source=_opt(batch["thumb_source"][i]), thumb_target=_opt(batch["thumb_target"][i]),
        instruction_emb=_vector(batch["instruction_emb"][i]), reference_emb=_vector(batch["reference_emb"][i]),
        target_emb=_vector(batch["target_emb"][i]),
        split=split_for(pair_id, split_fractions), pipeline_version=pipeline_version,
        meta=_opt(batch["meta_json"][i]), edit_type_source=_opt(batch["edit_type_source"][i]),
        edit_type_confidence=_float(batch["edit_type_confidence"][i]),
        edit_type_predicted=_opt(batch["edit_type_predicted"][i]), needs_review=bool(batch["needs_review"][i]),
        reference_source=_opt(batch["reference_source"][i]) if "reference_source" in batch else None,
        **{k: scores.get(k) for k in ("edit_strength", "mask_area", "ref_similarity", "temporal_stability",
                                      "leakage")},
    )


def _keys(instruction: list, target: list) -> np.ndarray:
    """(instruction, target) as one unit vector per row: a near-duplicate says the same thing about the same
    picture."""
    a = l2_normalise(np.stack([np.asarray(v, np.float32) for v in instruction]))
    b = l2_normalise(np.stack([np.asarray(v, np.float32) for v in target]))
    return l2_normalise(np.concatenate([a, b], axis=1))


def _vector(v) -> list[float] | None:
    vector = vector_from(v)
    return None if vector is None else vector.tolist()


def _opt(v):
    """Absent (None, "", b"", NaN) -> None; bytes-like -> bytes; anything else as it is."""
    if missing(v):
        return None
    return bytes(v) if isinstance(v, bytes | bytearray | memoryview) else v


def _int(v) -> int | None:
    return None if missing(v) else int(v)


def _float(v) -> float | None:
    return None if missing(v) else float(v)


def synthetic_batch(start: int, n: int, rng: np.random.Generator, blob: int = 4096) -> dict:
    """A batch as the embed stage hands it to the writer — n accepted rows with random embeddings and random clip
    bytes — for measuring and testing the writer at sizes the pipeline would take hours to reach."""
    def same(value):
        return np.array([value] * n, dtype=object)

    return dict(
        pair_id=np.array([f"scale-{i:09d}" for i in range(start, start + n)], dtype=object),
        reject_reason=same(None), reject_stage=same(None), reject_detail=same(None), dataset=same("scale"),
        scores_json=same("{}"), instruction_emb=list(rng.normal(size=(n, 384)).astype(np.float32)),
        target_emb=list(rng.normal(size=(n, 256)).astype(np.float32)), reference_emb=same(None),
        edit_type=np.array(rng.choice(list(EDIT_TYPES[:5]), n), dtype=object), task=same("instruct"),
        instruction=same("add a red kite"), source_bytes=[rng.bytes(blob) for _ in range(n)],
        target_bytes=[rng.bytes(blob) for _ in range(n)], source_uri=same(None), target_uri=same(None),
        num_frames=same(9), fps=same(8.0), width=same(64), height=same(64), codec=same("h264"),
        reference_png=same(None), edit_mask_png=same(None), thumb_source=same(None), thumb_target=same(None),
        meta_json=same(None), edit_type_source=same("ground_truth"), edit_type_confidence=same(1.0),
        edit_type_predicted=same(None), needs_review=same(False))

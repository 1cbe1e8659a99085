"""The Parquet files the two fake upstreams serve, and each one's direct result.

Batch and streaming hold "the same" table of ROWS rows (`id`, `amount`), as
two sides of a migration do: streaming has a few amounts changed, one in
every row group of batch's layout, so `sum(amount)` tells the sides apart
and a read that takes some row groups from one side and some from the other
sums to a figure neither side holds.

Two layouts of streaming's file:
- `same`: streaming written exactly as batch (same row groups, no
  compression, no dictionary, so the statistics and every byte offset are
  equal and only the changed values differ). This is the worst case: a
  reader that mixes the sides gets no error at all, only a wrong sum.
- `layout`: streaming written with another `row_group_size`, so the footer
  of one side describes offsets that mean nothing in the other's file (what
  made polars panic in issue 18).
"""
import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROWS = 100_000
BATCH_ROW_GROUP = 10_000
# The `layout` variant's streaming file: 4 row groups instead of 10.
OTHER_ROW_GROUP = 25_000
# Streaming's amount is batch's plus CHANGE in one row of every batch row
# group, so each row group a reader takes from streaming adds CHANGE.
CHANGE = 1_000
CHANGED_OFFSET = 5_000

LAYOUTS = ("same", "layout")


def _table(streaming):
    ids = pa.array(range(ROWS), type=pa.int64())
    amounts = list(range(ROWS))
    if streaming:
        for start in range(0, ROWS, BATCH_ROW_GROUP):
            amounts[start + CHANGED_OFFSET] += CHANGE
    return pa.table({"id": ids, "amount": pa.array(amounts, type=pa.int64())})


def _write(table, row_group_size):
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        row_group_size=row_group_size,
        compression="none",
        use_dictionary=False,
    )
    return buf.getvalue()


def direct_result(data):
    """(sum(amount), count(*)) of a Parquet file's bytes, read locally."""
    table = pq.read_table(pa.BufferReader(data), columns=["amount"])
    return (pc.sum(table["amount"]).as_py(), table.num_rows)


class Files:
    """`files[side][layout]`: the bytes each side serves for each layout;
    `direct[side][layout]`: their (sum, count) read locally."""

    def __init__(self):
        batch = _write(_table(streaming=False), BATCH_ROW_GROUP)
        streaming = _table(streaming=True)
        self.files = {
            "batch": {"same": batch, "layout": batch},
            "streaming": {
                "same": _write(streaming, BATCH_ROW_GROUP),
                "layout": _write(streaming, OTHER_ROW_GROUP),
            },
        }
        self.direct = {
            side: {layout: direct_result(data) for layout, data in by_layout.items()}
            for side, by_layout in self.files.items()
        }
        same = (self.files["batch"]["same"], self.files["streaming"]["same"])
        # The premises the scenarios rest on: if they failed, a pass would prove nothing.
        assert len(same[0]) == len(same[1]), "the `same` layout must be byte-aligned"
        assert same[0] != same[1], "the sides must hold different bytes"
        for layout in LAYOUTS:
            assert self.direct["batch"][layout] != self.direct["streaming"][layout], (
                f"layout {layout}: both sides sum the same, so a mix cannot be told apart"
            )
        assert len(self.files["streaming"]["layout"]) != len(batch), (
            "the `layout` variant must have another layout than batch"
        )


class ShadowFiles:
    """The pairs of the shadow check: both sides hold the same rows (batch's
    table), so a comparison must never count them diverged.
    `files[side][case]`, for `case` in SHADOW_CASES:
    - `identical`: byte for byte the same file on both sides;
    - `relaid`: streaming's file holds the same rows in OTHER_ROW_GROUP row
      groups (another layout, other bytes): a match only once the
      comparator reads Parquet as records (issue 20, item 2).
    `direct`: the (sum, count) every one of them gives, read locally."""

    def __init__(self):
        table = _table(streaming=False)
        batch = _write(table, BATCH_ROW_GROUP)
        relaid = _write(table, OTHER_ROW_GROUP)
        self.files = {
            "batch": {"identical": batch, "relaid": batch},
            "streaming": {"identical": bytes(batch), "relaid": relaid},
        }
        self.direct = direct_result(batch)
        assert relaid != batch, "the `relaid` case must have other bytes"
        assert direct_result(relaid) == self.direct, "the `relaid` case must hold the same rows"


SHADOW_CASES = ("identical", "relaid")

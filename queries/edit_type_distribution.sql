-- name: edit_type_distribution
-- description: Rows and share of each edit type, with its scope, largest first.
-- param table: quadruplets
WITH counts AS (
    SELECT edit_type, edit_scope, count(*) AS rows FROM {table} GROUP BY edit_type, edit_scope
)
SELECT edit_type, edit_scope, rows, round(rows * 1.0 / (SELECT sum(rows) FROM counts), 4) AS share
FROM counts
ORDER BY rows DESC, edit_type

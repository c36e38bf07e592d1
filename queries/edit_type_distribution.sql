-- name: edit_type_distribution
-- description: Rows and share of each edit type, with its scope, largest first.
-- param table: quadruplets
SELECT
    edit_type,
    any_value(edit_scope) AS edit_scope,
    count(*) AS rows,
    round(count(*) / sum(count(*)) OVER (), 4) AS share
FROM {table}
GROUP BY edit_type
ORDER BY rows DESC, edit_type

-- name: balance_preview
-- description: Per category: rows, share now, share under temperature sampling (p ∝ n^alpha), repeats per row.
-- param table: quadruplets
-- param by: edit_type
-- param alpha: 0.5
WITH counts AS (SELECT {by} AS category, count(*) AS rows FROM {table} GROUP BY {by}),
     weighted AS (SELECT category, rows, power(rows, $alpha) AS w FROM counts)
SELECT category, rows,
       round(rows * 1.0 / (SELECT sum(rows) FROM counts), 4) AS share_before,
       round(w / (SELECT sum(w) FROM weighted), 4) AS share_after,
       round((SELECT sum(rows) FROM counts) * (w / (SELECT sum(w) FROM weighted)) / rows, 3) AS expected_repeats
FROM weighted
ORDER BY rows DESC, category

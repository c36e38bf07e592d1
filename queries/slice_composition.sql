-- name: slice_composition
-- description: What a saved slice holds: rows and sampling share per category and split.
-- param slice_id: ''
SELECT r.category, q.split, count(*) AS rows, round(sum(r.weight), 4) AS share
FROM slice_rows r JOIN quadruplets q ON q.id = r.id
WHERE r.slice_id = $slice_id
GROUP BY r.category, q.split
ORDER BY share DESC, r.category, q.split

-- name: rejects_by_reason
-- description: Rejected inputs per stage and reason code, with one example each.
SELECT stage, reason, count(*) AS rows, min(input_ref) AS example
FROM rejects
GROUP BY stage, reason
ORDER BY rows DESC, stage, reason

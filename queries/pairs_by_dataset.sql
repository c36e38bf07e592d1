-- name: pairs_by_dataset
-- description: Ingested pairs per dataset, with frame counts and sizes; min_frames filters short clips.
-- param min_frames: 0
SELECT dataset, count(*) AS pairs, avg(num_frames) AS mean_frames,
       min(width) AS min_width, max(width) AS max_width
FROM pairs
WHERE coalesce(num_frames, 0) >= $min_frames
GROUP BY dataset
ORDER BY pairs DESC, dataset

-- name: quality_outliers
-- description: Quadruplets whose scores sit beyond the given bounds (weakest edits first), to inspect or drop.
-- param table: quadruplets
-- param min_edit_strength: 12
-- param min_ref_similarity: 0.7
-- param min_temporal_stability: 0.4
-- param max_leakage: 0.95
-- param limit: 50
SELECT id, edit_type, task, instruction, edit_strength, mask_area, ref_similarity, temporal_stability, leakage
FROM {table}
WHERE edit_strength < $min_edit_strength
   OR ref_similarity < $min_ref_similarity
   OR temporal_stability < $min_temporal_stability
   OR leakage > $max_leakage
ORDER BY edit_strength, id
LIMIT $limit

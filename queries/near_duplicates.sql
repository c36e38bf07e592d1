-- name: near_duplicates
-- description: Pairs of quadruplets of one edit type whose target embeddings nearly coincide (a self-join:
-- description: fine for thousands of rows; for large tables use lake.nearest, which has an index).
-- param min_similarity: 0.98
-- param limit: 50
WITH e AS (SELECT id, edit_type, instruction, target_emb FROM quadruplets)
SELECT a.id AS id_a, b.id AS id_b, a.edit_type AS edit_type,
       round(CAST(1 - array_cosine_distance(a.target_emb, b.target_emb) AS DOUBLE), 4) AS similarity,
       a.instruction AS instruction_a, b.instruction AS instruction_b
FROM e AS a JOIN e AS b ON a.edit_type = b.edit_type
WHERE a.id < b.id AND 1 - array_cosine_distance(a.target_emb, b.target_emb) >= $min_similarity
ORDER BY similarity DESC, id_a, id_b
LIMIT $limit

-- name: near_duplicates
-- description: Pairs of quadruplets of one edit type whose target embeddings nearly coincide (DuckDB only:
-- description: it uses array_cosine_similarity; for large tables use lake.nearest, which has an index).
-- param min_similarity: 0.98
-- param limit: 50
WITH e AS MATERIALIZED (
    SELECT id, edit_type, instruction, target_emb FROM quadruplets
)
SELECT a.id AS id_a, b.id AS id_b, a.edit_type,
       round(array_cosine_similarity(a.target_emb, b.target_emb), 4) AS similarity,
       a.instruction AS instruction_a, b.instruction AS instruction_b
FROM e a JOIN e b ON a.edit_type = b.edit_type AND a.id < b.id
WHERE array_cosine_similarity(a.target_emb, b.target_emb) >= $min_similarity
ORDER BY similarity DESC, id_a, id_b
LIMIT $limit

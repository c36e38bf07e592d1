-- name: label_disagreements
-- description: Per given category, the rows whose classifier answer differs from the label the dataset gave, with the classifier's mean confidence and an example.
-- param table: quadruplets
WITH given AS (
    SELECT edit_type, edit_type_predicted, edit_type_confidence, instruction, id
    FROM {table}
    WHERE edit_type_source = 'given' AND edit_type_predicted IS NOT NULL
), totals AS (
    SELECT edit_type, count(*) AS given_rows FROM given GROUP BY edit_type
)
SELECT g.edit_type AS given, g.edit_type_predicted AS predicted, count(*) AS rows,
       round(count(*) * 1.0 / any_value(t.given_rows), 4) AS share_of_given,
       round(avg(g.edit_type_confidence), 3) AS mean_confidence,
       min(g.instruction) AS example
FROM given g JOIN totals t USING (edit_type)
WHERE g.edit_type <> g.edit_type_predicted
GROUP BY g.edit_type, g.edit_type_predicted
ORDER BY rows DESC, given, predicted

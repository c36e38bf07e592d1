-- name: label_confusion
-- description: Given labels against the classifier's answers (agreements included): the confusion matrix as rows.
-- param table: quadruplets
SELECT edit_type AS given, edit_type_predicted AS predicted, count(*) AS rows
FROM {table}
WHERE edit_type_source = 'given' AND edit_type_predicted IS NOT NULL
GROUP BY edit_type, edit_type_predicted
ORDER BY given, predicted

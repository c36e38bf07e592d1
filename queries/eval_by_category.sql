-- name: eval_by_category
-- description: Compare evaluation runs: the mean of one metric per category, one row per run and category.
-- param bench: ''
-- param metric: psnr
SELECT run_id, any_value(model) AS model, category, count(DISTINCT item_id) AS items,
       round(avg(value), 4) AS mean, round(stddev_samp(value) / sqrt(count(value)), 4) AS std_error
FROM eval_results
WHERE bench = $bench AND metric = $metric AND value IS NOT NULL
GROUP BY run_id, category
ORDER BY category, run_id

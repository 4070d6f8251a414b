WITH matching AS (
  SELECT
    s.run_id,
    s.label,
    s.date,
    COUNT(*) AS n_matching_stages
  FROM stages AS s
  WHERE
    s.label = $1 AND s.type = $2 AND s.fail_ratio > $3
  GROUP BY
    s.run_id,
    s.label,
    s.date
)
SELECT
  r.*,
  matching.n_matching_stages
FROM runs AS r
JOIN matching
  ON matching.run_id = r.run_id AND matching.label = r.label AND matching.date = r.date
WHERE
  r.label = $1
ORDER BY
  r.started_at,
  r.run_id
-- params: ['competitor_discovery', 'filtering', 0.9]

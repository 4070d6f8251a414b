WITH matching AS (
  SELECT
    s.run_id,
    s.label,
    s.date,
    COUNT(*) AS n_matching_stages
  FROM stages AS s
  GROUP BY
    s.run_id,
    s.label,
    s.date
)
SELECT
  r.*,
  COALESCE(matching.n_matching_stages, 0) AS n_matching_stages
FROM runs AS r
LEFT JOIN matching
  ON matching.run_id = r.run_id AND matching.label = r.label AND matching.date = r.date
WHERE
  r.status = $1
ORDER BY
  r.started_at,
  r.run_id
-- params: ['failure']

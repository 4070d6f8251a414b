SELECT
  run_id,
  label,
  date,
  started_at,
  status,
  n_stages,
  n_matching_stages,
  input_json
FROM (
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
) AS found
ORDER BY
  started_at,
  run_id
-- params: ['competitor_discovery', 'filtering', 0.9]

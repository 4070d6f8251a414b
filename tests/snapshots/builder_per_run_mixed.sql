WITH matching AS (
  SELECT
    s.run_id,
    s.label,
    s.date,
    COUNT(*) AS n_matching_stages
  FROM stages AS s
  JOIN runs AS r
    ON r.run_id = s.run_id AND r.label = s.label AND r.date = s.date AND r.date >= $1
  WHERE
    s.date >= $1
    AND (
      r.status = $2 OR s.type = $3
    )
    AND EXISTS(
      SELECT
        1
      FROM candidates AS c
      WHERE
        c.run_id = s.run_id
        AND c.stage_id = s.stage_id
        AND c.label = s.label
        AND c.date = s.date
        AND c.date >= $1
        AND c.candidate_id IN ($4, $5)
    )
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
  r.date >= $1 AND r.started_at >= CAST($6 AS TIMESTAMPTZ)
ORDER BY
  r.started_at,
  r.run_id
-- params: ['2024-05-01', 'failure', 'ranking', '42', '43', datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)]

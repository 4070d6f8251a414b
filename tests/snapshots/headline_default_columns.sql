SELECT
  s.run_id,
  s.label,
  s.date,
  s.stage_id,
  s.name,
  s.type,
  s.n_in,
  s.n_out,
  s.n_passed,
  s.n_failed,
  s.fail_ratio,
  s.pass_ratio
FROM stages AS s
WHERE
  s.label = $1 AND s.type = $2 AND s.fail_ratio > $3
ORDER BY
  s.started_at,
  s.run_id,
  s.seq
-- params: ['competitor_discovery', 'filtering', 0.9]

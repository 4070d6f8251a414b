SELECT
  s.*,
  r.started_at AS run_started_at,
  r.finished_at AS run_finished_at,
  r.duration_ms AS run_duration_ms,
  r.status AS run_status,
  r.error_message AS run_error_message,
  r.error_code AS run_error_code,
  r.n_stages AS run_n_stages,
  r.attributes AS run_attributes,
  r.input_json AS run_input_json,
  r.output_json AS run_output_json,
  r.sdk_version AS run_sdk_version,
  r.host AS run_host,
  r.pid AS run_pid,
  r.n_stages_shed AS run_n_stages_shed,
  r.n_candidates_shed AS run_n_candidates_shed
FROM stages AS s
LEFT JOIN runs AS r
  ON r.run_id = s.run_id AND r.label = s.label AND r.date = s.date
WHERE
  s.name = $1
  AND EXISTS(
    SELECT
      1
    FROM candidates AS c
    WHERE
      c.run_id = s.run_id
      AND c.stage_id = s.stage_id
      AND c.label = s.label
      AND c.date = s.date
      AND c.candidate_id = $2
      AND c.passed = $3
  )
ORDER BY
  s.started_at,
  s.run_id,
  s.seq
-- params: ['price-filter', '42', False]

SELECT
  s.run_id,
  s.name,
  s.score_p90,
  r.started_at AS run_started_at,
  s.metrics[$1] AS "metrics.ndcg"
FROM stages AS s
LEFT JOIN runs AS r
  ON r.run_id = s.run_id AND r.label = s.label AND r.date = s.date AND r.label = $2
WHERE
  s.label = $2 AND s.type = $3 AND s.score_p90 <= $4
ORDER BY
  s.score_p90 DESC,
  r.started_at ASC
LIMIT $5
-- params: ['ndcg', 'search', 'scoring', 0.2, 20]

"""The SQL of the canonical questions that need more than `find` (docs/questions.md).

One copy, shared by the docs' tests and the query benchmark, so what is documented, tested
and timed is the same text.
"""

from __future__ import annotations

from typing import Final

# 3) top drop reasons per filtering stage since $since ($day: its date, for pruning)
TOP_DROP_REASONS: Final = """\
select label, name as stage, e.key as reason, sum(e.value)::bigint as dropped
from (select label, name, unnest(map_entries(reason_counts)) as e
      from stages
      where type = 'filtering' and date >= $day and started_at >= $since)
group by label, stage, reason
qualify row_number() over (partition by label, stage order by dropped desc, reason) <= 3
order by label, stage, dropped desc, reason"""

# 5) scoring stages whose median score moved by more than $pct % against the previous week
SCORE_DRIFT: Final = """\
select label, name as stage,
       median(score_p50) filter (where started_at >= now() - interval 7 day) as p50_this_week,
       median(score_p50) filter (where started_at < now() - interval 7 day) as p50_last_week,
       round(100 * (p50_this_week - p50_last_week) / abs(p50_last_week), 1) as change_pct
from stages
where type = 'scoring' and started_at >= now() - interval 14 day
group by all
having abs(change_pct) > $pct
order by abs(change_pct) desc"""

# 7) the slowest stage per label at p90
SLOWEST_STAGE_P90: Final = """\
select label, arg_max(name, p90_ms) as slowest_stage, max(p90_ms) as p90_ms
from (select label, name, quantile_cont(duration_ms, 0.9) as p90_ms from stages group by all)
group by label
order by label"""

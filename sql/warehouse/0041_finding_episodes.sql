-- When each finding was open. compare.finding keeps one row per rule and subject: a
-- finding resolved and found again later starts over (its first_seen is the run that
-- found it again, its resolved_at cleared), so the earlier episode, and the day it was
-- resolved, were gone from report.finding_daily. Each opening and resolution is now kept
-- in compare.finding_episode, written by triggers on compare.finding, whichever run or
-- function changes it; report.finding_daily counts episodes.

create table compare.finding_episode (
    finding_id bigint not null references compare.finding (id) on delete cascade,
    opened_at timestamptz not null,
    resolved_at timestamptz,
    primary key (finding_id, opened_at)
);
-- (A finding's open episode is found through the key: a finding has few episodes.)
comment on table compare.finding_episode is '比对发现的每次出现：发现时间与解决时间（解决后再次发现为新的一次）';
comment on column compare.finding_episode.finding_id is '比对发现（compare.finding.id）';
comment on column compare.finding_episode.opened_at is '本次发现时间';
comment on column compare.finding_episode.resolved_at is '本次解决时间（未解决为空）';
grant select, insert, update, delete on compare.finding_episode to ebis_pipeline;
grant select on compare.finding_episode to ebis_analyst;

-- What is known so far: one episode per finding, as its row says.
insert into compare.finding_episode (finding_id, opened_at, resolved_at)
select id, first_seen, resolved_at from compare.finding;

-- New findings open an episode each (a statement's rows at once: a first full run
-- inserts many).
create function compare.finding_opened() returns trigger
language plpgsql as $$
begin
    insert into compare.finding_episode (finding_id, opened_at, resolved_at)
    select n.id, n.first_seen, n.resolved_at from new_rows n;
    return null;
end $$;
comment on function compare.finding_opened() is '新的比对发现：记录其第一次出现';
create trigger finding_opened after insert on compare.finding
    referencing new table as new_rows for each statement execute function compare.finding_opened();

-- A finding resolved closes its open episode; one found again opens a new one. Each run
-- sets resolved_at on every finding it sees, so the trigger fires only where it changed.
create function compare.finding_resolved_or_reopened() returns trigger
language plpgsql as $$
begin
    if new.resolved_at is not null then
        update compare.finding_episode set resolved_at = new.resolved_at
        where finding_id = new.id and resolved_at is null;
    else
        insert into compare.finding_episode (finding_id, opened_at)
        values (new.id, new.first_seen)
        on conflict do nothing;
    end if;
    return null;
end $$;
comment on function compare.finding_resolved_or_reopened() is '比对发现被解决或再次出现：结束或开始一次出现';
create trigger finding_resolved_or_reopened after update of resolved_at on compare.finding
    for each row when (old.resolved_at is distinct from new.resolved_at)
    execute function compare.finding_resolved_or_reopened();

-- Findings per rule, bureau and day, from their episodes: a finding resolved and found
-- again counts as opened twice and resolved once.
create or replace view report.finding_daily as
with fb as (
    select f.rule, b.bureau, e.opened_at::date as opened, e.resolved_at::date as closed
    from compare.finding_episode e
    join compare.finding f on f.id = e.finding_id
    cross join lateral unnest(f.bureaus) b(bureau)
), days as (
    select d::date as day
    from generate_series((select min(opened_at)::date from compare.finding_episode), current_date, interval '1 day') d
)
select d.day, fb.rule, r.label as rule_label, fb.bureau, compare.bureau_label(fb.bureau) as bureau_label,
       count(*) filter (where fb.opened = d.day) as opened,
       count(*) filter (where fb.closed = d.day) as resolved,
       count(*) filter (where fb.closed is null or fb.closed > d.day) as open_at_end
from days d
join fb on fb.opened <= d.day and (fb.closed is null or fb.closed >= d.day)
join compare.rule r on r.name = fb.rule
group by d.day, fb.rule, r.label, fb.bureau;

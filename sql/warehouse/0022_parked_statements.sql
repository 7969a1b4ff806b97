-- A queued statement the base cannot take in (a value one of its indexes or checks
-- refuses, which the exchange tables do not) failed every drain and stalled the whole
-- base behind it. The drainer now takes the statements one at a time when a drain fails,
-- and parks the one that still fails here, with the server's reason: the rest of the
-- queue goes on, and `ebis status` counts what is parked. Its records are missing from
-- the base until the cause is fixed and the statement is queued again
-- (`insert into core.pending (...) select ... from core.pending_parked`) or the base is
-- rebuilt (`core.rebuild()`).
create table core.pending_parked (
    like core.pending,
    parked_at timestamptz not null default now(),
    reason text not null
);
comment on table core.pending_parked is '企业基础信息库无法纳入的语句（附原因），待修复后重新排队';

-- Parks the oldest queued statement with `reason`; its number, or -1 when a drainer is
-- at work (it never waits), or NULL when nothing is queued.
create function core.park_oldest(reason text) returns bigint
language plpgsql as $$
declare
    parked bigint;
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        return -1;
    end if;
    with p as (
        delete from core.pending
        where seq = (select min(seq) from core.pending)
        returning *)
    insert into core.pending_parked
    select p.*, now(), reason from p
    returning seq into parked;
    return parked;
end $$;

grant select, insert, update, delete on core.pending_parked to ebis_pipeline;
grant select on core.pending_parked to ebis_analyst;

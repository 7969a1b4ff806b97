-- A rebuild of the enterprise base shows that it runs, since when, and at which step.
--
-- A rebuild is one transaction: 24 s for a first load of 1M records, about 2 minutes for a
-- city of 1M enterprises (7.6M exchange records), longer for a larger one. Meanwhile
-- nothing it does is visible to others, and `ebis status` showed only the base's queue
-- growing older, as it would behind a stuck drainer.
--
-- `core.rebuild_step(step)` sets the rebuilding backend's application_name, for the rest of
-- its transaction, to `ebis:base-rebuild:<start, Unix milliseconds>:<step>`. PostgreSQL reports
-- an application_name at once (mid-transaction) in pg_stat_activity, where every role sees
-- it (a backend's start times and query text only its own role and pg_read_all_stats do),
-- so `ebis status` and `/metrics` read it from there. The steps: `resolve` (records
-- resolved, enterprises built), `index` (keys and indexes built again), `analyze`,
-- `commit` (the rebuild is done; its transaction ends).

create function core.rebuild_step(step text) returns void
language plpgsql as $$
declare
    started text := coalesce(nullif(current_setting('ebis.rebuild_started', true), ''),
                             (extract(epoch from clock_timestamp()) * 1000)::bigint::text);
begin
    perform set_config('ebis.rebuild_started', started, true);
    perform set_config('application_name', left(format('ebis:base-rebuild:%s:%s', started, step), 63), true);
end $$;
comment on function core.rebuild_step(text) is '企业基础库重建：在 application_name 中公布开始时间与当前步骤（ebis status 读取）';

create or replace function core.rebuild_all() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp set enable_seqscan = on set jit = off
    set work_mem = '64MB' set maintenance_work_mem = '256MB' as $$
declare
    base constant regclass[] := array['core.identifier'::regclass, 'core.enterprise'::regclass];
    drops text[];
    again text[];
    d text;
begin
    perform core.rebuild_step('resolve');
    -- Keys and indexes: dropped now, built again afterwards (in one sort each, not row
    -- by row).
    with parts(drop_sql, create_sql) as (
        select format('alter table %s drop constraint %I', c.conrelid::regclass, c.conname),
               format('alter table %s add constraint %I %s', c.conrelid::regclass, c.conname,
                      pg_get_constraintdef(c.oid))
          from pg_constraint c
         where c.conrelid = any(base) and c.contype in ('p', 'u')
        union all
        select format('drop index %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
          from pg_index i
         where i.indrelid = any(base)
           and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid))
    select coalesce(array_agg(drop_sql), '{}'), coalesce(array_agg(create_sql), '{}')
      into drops, again
      from parts;
    truncate core.identifier, core.enterprise;
    foreach d in array drops loop
        execute d;
    end loop;
    -- Every enterprise changes: the next comparison runs full (a marker, instead of every
    -- key logged in compare.changed, which took 4.6 s of a 1M rebuild).
    perform set_config('ebis.rebuilding', 'on', true);
    perform core.resolve_all();
    perform set_config('ebis.rebuilding', 'off', true);
    insert into compare.changed values ('*') on conflict do nothing;
    perform core.rebuild_step('index');
    foreach d in array again loop
        execute d;
    end loop;
    -- core.identifier was analyzed once filled (core.build_enterprises); the base has
    -- an expression index, whose statistics come with its analyze.
    perform core.rebuild_step('analyze');
    analyze core.enterprise;
    perform core.rebuild_step('commit');
end $$;

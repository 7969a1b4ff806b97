-- A catch-up is mostly updates of rows the warehouse already holds (a name, an address).
-- Two costs of those updates that a profile of a 100,000-change binlog catch-up found, and
-- that bought nothing:
--
-- 1. ebis.analyze_stale() analyzed every table whose rows had changed by a tenth since
--    its last analyze: updates count, so a catch-up re-analyzed the exchange table and
--    the base every ten seconds (5.7 s of a backend's time in a 26 s catch-up of 200,000 changes,
--    competing with the applies for the same cores) while the numbers the plans rest on
--    (rows per table, keys per value) had not moved. A table is now analyzed when it was
--    never analyzed, when its number of rows moved by a tenth (a load, a mass delete, as
--    compare.finding already was since 0025), or when it changed by as many rows as it
--    holds (a whole table rewritten: tombstones and statuses move the plans' estimates).
--
-- 2. Every update of an exchange row wrote a new version on another page (pages were
--    filled to the brim), so each update also inserted into every index of the table,
--    the expression indexes' plpgsql functions included. With a fifth of each page kept
--    free, an update that changes no indexed column (name, address, phone: identifiers
--    are the indexed ones) stays on its page as a heap-only tuple and touches no index:
--    a 5,000-row upsert took 20-25 % less time in an A/B on the same rows. The setting
--    applies to pages written from now on (a snapshot, new rows); tables already loaded
--    get it as their pages are rewritten (VACUUM FULL, or a re-snapshot), which a DBA may
--    do at a quiet hour.

create or replace function ebis.analyze_stale() returns text[]
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    done text[] := '{}';
begin
    for t in
        select s.schemaname, s.relname
        from pg_stat_user_tables s
        join pg_class c on c.oid = s.relid
        where s.schemaname in ('ebis', 'exchange', 'core', 'compare')
          and ((c.reltuples < 0 and s.n_mod_since_analyze > 0)
               or abs(s.n_live_tup - greatest(c.reltuples, 0)) > 50 + 0.1 * greatest(c.reltuples, 0)
               or s.n_mod_since_analyze > 50 + greatest(c.reltuples, 0))
        order by s.n_mod_since_analyze desc
    loop
        execute format('analyze %I.%I', t.schemaname, t.relname);
        done := done || (t.schemaname || '.' || t.relname);
    end loop;
    return done;
end $$;
comment on function ebis.analyze_stale() is '更新行数变化较大（或从未统计、或改动行数超过表行数）的数仓表的统计信息（自动清理关闭时亦可保证查询计划）';

do $$
declare
    t regclass;
begin
    for t in select c.oid::regclass from pg_class c
             where c.relnamespace = 'exchange'::regnamespace and c.relkind = 'r'
    loop
        execute format('alter table %s set (fillfactor = 80)', t);
    end loop;
end $$;

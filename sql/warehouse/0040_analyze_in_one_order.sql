-- ebis.analyze_stale() analyzes the stale tables in one order for every caller: by name.
-- Each ANALYZE holds its table's ShareUpdateExclusiveLock until the caller's transaction
-- ends, and the tables were taken most-changed first, an order that changes as other
-- sessions analyze. Two callers at once (the drainer's periodic analyze and a settle of
-- the base, or two processes' drainers) could each hold a table the other waited for:
-- the capture bench's test failed once with `deadlock detected` (40P01) between two
-- `select ebis.analyze_stale()`. Taken in one order, a caller only waits for the other.
-- Which tables are analyzed is unchanged.
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
        order by s.schemaname, s.relname
    loop
        execute format('analyze %I.%I', t.schemaname, t.relname);
        done := done || (t.schemaname || '.' || t.relname);
    end loop;
    return done;
end $$;

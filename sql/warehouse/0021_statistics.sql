-- Planner statistics the pipeline keeps fresh itself. Where autovacuum is off (as on
-- some hardened or test servers) or behind a bulk load, the exchange and base tables have
-- no statistics after a first snapshot, and a bulk refresh of the enterprise base planned
-- a nested loop over two 100,000-row tables it believed held five rows: a 100,000-
-- enterprise city's last drain ran for more than half an hour. The drainer of `ebis run`
-- and each comparison run now first analyze every warehouse table that changed by more
-- than autovacuum's own threshold since it was last analyzed (by anyone); and a bulk
-- refresh never nests loops.

-- The tables analyzed. Runs as the migrations' owner: ANALYZE needs the table's owner.
create function ebis.analyze_stale() returns text[]
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
          and s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
        order by s.n_mod_since_analyze desc
    loop
        execute format('analyze %I.%I', t.schemaname, t.relname);
        done := done || (t.schemaname || '.' || t.relname);
    end loop;
    return done;
end $$;
revoke execute on function ebis.analyze_stale() from public;
grant execute on function ebis.analyze_stale() to ebis_pipeline;
comment on function ebis.analyze_stale() is '更新自上次统计以来变化较大的数仓表的统计信息（自动清理关闭时亦可保证查询计划）';

alter function core.refresh_enterprises_bulk(text[]) set enable_nestloop = off;

-- The base queue's trigger and its queue rows cost less. On a first snapshot every COPY of
-- 10,000 rows into an exchange table fires core.on_exchange_change once, which queued the
-- statement's identifiers: 19.5 ms a statement (EXPLAIN ANALYZE on the capture bench's 1M
-- registrations, 8 statements, PostgreSQL 15), about 2 s of a backend for 1M rows. Two
-- thirds of it bought nothing:
--
-- 1. `array(select distinct ...)` sorted the statement's identifiers to drop duplicates, a
--    sort of 10,000 texts through the database's collation. Whoever reads the queue drops
--    duplicates anyway (core.pending_values is `array_agg(distinct ...)` over every queued
--    statement it takes; a rebuild reads the exchange tables), so the trigger now queues
--    them as the statement has them (7 ms less a statement). The count a drain weighs
--    against a rebuild (core.rebuild_pays) may now count an identifier twice when one
--    statement holds it twice, which no snapshot chunk does (keys are unique) and a
--    stream batch rarely does.
-- 2. A queued statement of 10,000 identifiers is a 200 kB array, which PostgreSQL
--    compresses with pglz when it is stored: 6 ms a statement. lz4 (PostgreSQL 14 and
--    later, when built with it, as the PGDG and distribution packages are) does it in a
--    fraction: the trigger took 5.8 ms a statement with both changes. A server without
--    lz4 keeps pglz.
--
-- A 5,000-row catch-up upsert's update trigger queues its rows' references (touch_rows)
-- and gains little (28 -> 25 ms), since most of its time is the join of the old and new
-- rows.

create or replace function core.on_exchange_change() returns trigger
language plpgsql set jit = off as $$
declare
    relevant text[] := string_to_array(tg_argv[0], ',');
    resolving boolean := tg_table_name in ('aic_establishment', 'qts_code_issuance', 'tax_registration');
    ids text[];
    pick text[];
    moved text;
    changed text;
    r text[];
    o text[];
    t text[];
    refs core.row_ref[] := '{}';
    c text;
begin
    -- For each identifier: the expression reading it, '{}' where the table has none.
    foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
        ids := ids || case when c = any(relevant) then c end;
    end loop;
    if tg_op in ('INSERT', 'DELETE') then
        foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
            pick := pick || case when c = any(relevant)
                then format('array(select x.%1$I from %2$I x where x.%1$I is not null)', c,
                            case when tg_op = 'INSERT' then 'new_rows' else 'old_rows' end)
                else '''{}''::text[]' end;
        end loop;
        execute format('select %s, %s, %s', pick[1], pick[2], pick[3]) into r, o, t;
    else
        select string_agg(format('n.%1$I is distinct from d.%1$I', x), ' or ') into moved
          from unnest(array_remove(ids, null) || array['deleted_at']) x;
        select string_agg(format('n.%1$I is distinct from d.%1$I', x), ' or ') into changed
          from unnest(relevant) x;
        foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
            pick := pick || case when c = any(relevant)
                then format('array(select distinct v from c, unnest(array[c.%1$I, c.%2$I]) v
                                   where (c.moved or not $1) and v is not null)', 'n_' || c, 'o_' || c)
                else '''{}''::text[]' end;
        end loop;
        execute format(
            'with c as (
                 select n.source, n.source_key, (%s) as moved %s
                 from new_rows n join old_rows d on d.source = n.source and d.source_key = n.source_key
                 where %s)
             select %s, %s, %s,
                    array(select row(%L, c.source, c.source_key)::core.row_ref from c where not c.moved and $1)',
            moved,
            (select coalesce(string_agg(format(', n.%1$I as %2$I, d.%1$I as %3$I', x, 'n_' || x, 'o_' || x), ''), '')
               from unnest(array_remove(ids, null)) x),
            changed, pick[1], pick[2], pick[3], tg_table_name)
          into r, o, t, refs using resolving;
    end if;
    if cardinality(r) + cardinality(o) + cardinality(t) + cardinality(refs) = 0 then
        return null;
    end if;
    if resolving then
        insert into core.pending (resolve_reg, resolve_org, resolve_tax, touch_rows)
        values (r, o, t, refs);
    elsif tg_table_name = 'qts_code_voided' then
        -- A code voided (or restored) changes which code its registration number links to.
        insert into core.pending (resolve_org, touch_org) values (o, o);
    else
        insert into core.pending (touch_reg, touch_org, touch_tax)
        values (case when tg_table_name like 'aic\_%' then r else '{}' end,
                case when tg_table_name like 'qts\_%' then o else '{}' end,
                case when tg_table_name like 'tax\_%' then t else '{}' end);
    end if;
    return null;
end $$;

-- New queue rows (and parked ones) are compressed with lz4 where the server has it.
do $$
declare
    t text;
begin
    if current_setting('server_version_num')::int >= 140000 then
        begin
            foreach t in array array['core.pending', 'core.pending_parked'] loop
                execute format('alter table %s %s', t,
                    (select string_agg(format('alter column %I set compression lz4', c), ', ')
                       from unnest(array['resolve_reg', 'resolve_org', 'resolve_tax', 'touch_reg',
                                         'touch_org', 'touch_tax', 'touch_rows']) c));
            end loop;
        exception when feature_not_supported then
            raise notice 'this server has no lz4: the base queue stays compressed with pglz';
        end;
    end if;
end $$;

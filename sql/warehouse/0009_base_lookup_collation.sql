-- The base trigger looked identifiers up with `i.record_kind = tg_table_name`: `tg_table_name`
-- is a `name` (collation "C") and `record_kind` a text column of the database's collation,
-- so the comparison could not use core.identifier's primary key, and every changed row
-- scanned the whole index (seconds per batch at a million enterprises). Comparing as text
-- of the default collation makes it an index lookup again. Only that line changes.

create or replace function core.on_exchange_change() returns trigger
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    relevant text[] := string_to_array(tg_argv[0], ',');
    identity constant text[] := array['reg_no', 'org_code', 'taxpayer_id', 'deleted_at'];
    resolving boolean := tg_table_name in ('aic_establishment', 'qts_code_issuance', 'tax_registration');
    rows jsonb[];
    refresh jsonb[];
    r text[];
    o text[];
    t text[];
begin
    -- One source at a time maintains the base: a transaction that reaches this point waits
    -- for the others to commit, then sees their rows (statements in read committed take
    -- fresh snapshots), so no link is computed from a half-visible picture.
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    if tg_op = 'INSERT' then
        rows := array(select to_jsonb(n) - 'raw_row' from new_rows n);
    elsif tg_op = 'DELETE' then
        rows := array(select to_jsonb(d) - 'raw_row' from old_rows d);
    else
        with pairs as (
            select to_jsonb(n) - 'raw_row' as nj, to_jsonb(d) - 'raw_row' as oj
            from new_rows n join old_rows d on d.source = n.source and d.source_key = n.source_key
        ), changed as (
            select nj, oj,
                   exists (select 1 from unnest(identity) c where nj -> c is distinct from oj -> c) as moved
            from pairs
            where exists (select 1 from unnest(relevant) c where nj -> c is distinct from oj -> c)
        )
        select array(select x from changed, lateral (values (nj), (oj)) v(x) where moved or not resolving),
               array(select nj from changed where not moved and resolving)
          into rows, refresh
          from (select 1) one;
    end if;
    select coalesce(array_agg(j->>'reg_no') filter (where j ? 'reg_no'), '{}'),
           coalesce(array_agg(j->>'org_code') filter (where j ? 'org_code'), '{}'),
           coalesce(array_agg(j->>'taxpayer_id') filter (where j ? 'taxpayer_id'), '{}')
      into r, o, t
      from unnest(rows) j;
    if resolving then
        if cardinality(rows) > 0 then
            perform core.resolve(r, o, t);
        end if;
        if cardinality(refresh) > 0 then
            perform core.refresh_enterprises(array(
                select distinct i.enterprise_key from core.identifier i
                join unnest(refresh) j on i.record_kind = tg_table_name::text collate "default"
                     and i.source = j->>'source' and i.source_key = j->>'source_key'));
        end if;
    elsif cardinality(rows) > 0 then
        perform core.refresh_enterprises(array(
            select distinct i.enterprise_key from core.identifier i
            where (i.record_kind = 'aic_establishment' and i.reg_no = any(r))
               or (i.record_kind = 'qts_code_issuance' and i.org_code = any(o))
               or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(t))));
    end if;
    return null;
end $$;

-- The enterprise base is written in the order of its key. A drain refreshes the enterprises a
-- batch touched, and a catch-up or a large transaction touches them anywhere in the base:
-- written in the order they were computed (a hash of the key), each row's page and index
-- pages were found at random, so with the warehouse's pages far larger than its shared
-- buffers nearly every row read a page back and wrote a dirty one out. Upserting 100,000
-- renamed enterprises of a 1,000,000-enterprise base (shared_buffers 128MB) read 365,380
-- pages and wrote 340,520 in 5.9 s; in key order, which is the order a rebuild lays the
-- base out in (0038), it read 124,595 and wrote 117,578 in 3.3 s.
--
-- The drainer also hands each of its two connections one half of the keys in this order
-- (the ranges the two write do not interleave).

create or replace function core.refresh_enterprises_now(keys text[]) returns void
language plpgsql as $$
declare
    upsert text;
begin
    if core.rebuilding() then
        -- A rebuild's base is empty and has no indexes: its rows go straight in, through
        -- a view of the base under the name the computing functions write to (a
        -- million rows would otherwise be written twice, the first time to disk).
        delete from core.enterprise where enterprise_key = any(keys);
        create temp view ebis_refreshed as select * from core.enterprise;
    else
        create temp table ebis_refreshed (like core.enterprise) on commit drop;
    end if;
    if cardinality(keys) <= 5000 then
        perform core.refresh_enterprises_by_key(keys);
    elsif not core.rebuilding()
          and cardinality(keys) < 0.05 * (select greatest(c.reltuples, 0) from pg_class c
                                          where c.oid = 'core.enterprise'::regclass) then
        perform core.refresh_enterprises_probing(keys);
    else
        perform core.refresh_enterprises_scanning(keys);
    end if;
    if core.rebuilding() then
        drop view ebis_refreshed;
    else
        -- Gone: enterprises no record names any more.
        delete from core.enterprise
        where enterprise_key = any(array(select k from unnest(keys) k
                                         except select n.enterprise_key from ebis_refreshed n));
        -- Every column but the key and the time of the last change, compared and set, in
        -- the order of the base's pages and its key's index.
        select format('insert into core.enterprise as e select * from ebis_refreshed order by enterprise_key collate "C"
                       on conflict (enterprise_key) do update set (%s, updated_at) = (%s, excluded.updated_at)
                       where (%s) is distinct from (%2$s)',
                      string_agg(quote_ident(a.attname), ', ' order by a.attnum),
                      string_agg('excluded.' || quote_ident(a.attname), ', ' order by a.attnum),
                      string_agg('e.' || quote_ident(a.attname), ', ' order by a.attnum))
          into upsert
        from pg_attribute a
        where a.attrelid = 'core.enterprise'::regclass and a.attnum > 0 and not a.attisdropped
          and a.attname not in ('enterprise_key', 'updated_at');
        execute upsert;
        -- Logged for the incremental comparison, unless its next run is full anyway:
        -- the marker '*' is there, or there are more keys than an incremental run takes.
        if not exists (select 1 from compare.changed where enterprise_key = '*') then
            if cardinality(keys) > compare.days('incremental_max_enterprises') then
                insert into compare.changed values ('*') on conflict do nothing;
            else
                insert into compare.changed
                select distinct k from unnest(keys) k where k is not null
                on conflict do nothing;
            end if;
        end if;
        drop table ebis_refreshed;
    end if;
end $$;

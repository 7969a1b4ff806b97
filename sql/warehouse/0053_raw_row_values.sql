-- An exchange row's raw row (源记录原文) keeps the source row's values only, as a JSON
-- array in the source's column order; its column names are kept once per list, in
-- ebis.raw_layout, and the row names its list in raw_layout. Written into every row, the
-- names were about 300 of a raw row's 520 bytes (the capture bench's registrations: 28
-- columns; an exchange row went from 829 to 573 bytes). Copying the same 1,000,000 rows
-- into a bare table took 7.3-9.0 s with the names and 5.3-6.1 s without them, on this
-- project's 2-core machines (885 MB against 613 MB; their keys and indexes, built
-- afterwards, took 2.9-3.1 and 2.7 s); every upsert, every transition table the base
-- queue's triggers fill, and every scan of a rebuild reads and writes that much less.
--
-- ebis.raw_row(raw_layout, raw_row) gives the row back as an object: an administrator
-- reads a column with ebis.raw_row(raw_layout, raw_row) ->> 'ENTNAME'. A row written
-- before this migration holds its object and no list (raw_layout null): ebis.raw_row gives
-- it as it is, and the first time ebis reads the row again it is rewritten once, with the
-- same values. No table is rewritten here.
--
-- The quarantine keeps each rejected row as an object (jsonb), as before.

create table ebis.raw_layout (
    layout integer generated always as identity primary key,
    columns text[] not null,
    -- A list can be longer than a b-tree entry may be: its hash is the key.
    columns_md5 text not null unique,
    first_seen timestamptz not null default now()
);
comment on table ebis.raw_layout is '源记录原文的列名清单：交换库各行的源记录原文只存各列的值（JSON 数组），列名按清单存一次';
comment on column ebis.raw_layout.layout is '清单编号（交换库各表的 raw_layout）';
comment on column ebis.raw_layout.columns is '源表的列名，按源端顺序';
comment on column ebis.raw_layout.columns_md5 is '列名清单的 MD5（唯一）';
comment on column ebis.raw_layout.first_seen is '首次出现时间';

-- The number of a column list, numbered the first time it is met.
create function ebis.raw_layout_of(names text[]) returns integer
language plpgsql as $$
declare
    id integer;
begin
    select l.layout into id from ebis.raw_layout l where l.columns_md5 = md5(names::text);
    if id is null then
        insert into ebis.raw_layout (columns, columns_md5) values (names, md5(names::text))
        on conflict (columns_md5) do nothing
        returning layout into id;
    end if;
    if id is null then
        -- Numbered meanwhile by another session.
        select l.layout into id from ebis.raw_layout l where l.columns_md5 = md5(names::text);
    end if;
    return id;
end $$;

-- A raw row as a JSON object of its columns, in the source's order; a row with no list
-- (written before this migration) as it is.
create function ebis.raw_row(layout integer, raw json) returns json
language sql stable parallel safe as $$
    select case when layout is null then raw else (
        select json_object_agg(c.name, v.value order by c.at)
        from ebis.raw_layout l
        cross join lateral unnest(l.columns) with ordinality c(name, at)
        join lateral json_array_elements(raw) with ordinality v(value, at) on v.at = c.at
        where l.layout = raw_row.layout)
    end
$$;
comment on function ebis.raw_row(integer, json) is '源记录原文（列名与值的 JSON 对象）：ebis.raw_row(raw_layout, raw_row)';

do $$
declare
    t regclass;
begin
    for t in
        select c.oid::regclass
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'exchange' and c.relkind = 'r'
          and exists (select from pg_attribute a
                      where a.attrelid = c.oid and a.attname = 'raw_row' and not a.attisdropped)
        order by c.relname
    loop
        execute format('alter table %s add column raw_layout integer', t);
        execute format('comment on column %s.raw_row is %L', t,
                       '源记录原文（各列的值，JSON 数组；列名见 raw_layout，ebis.raw_row(raw_layout, raw_row) 给出对象）');
        execute format('comment on column %s.raw_layout is %L', t,
                       '源记录原文的列名清单（ebis.raw_layout；空表示 raw_row 是对象）');
    end loop;
end $$;

revoke execute on function ebis.raw_layout_of(text[]) from public;
grant select, insert on ebis.raw_layout to ebis_pipeline;
grant execute on function ebis.raw_layout_of(text[]), ebis.raw_row(integer, json) to ebis_pipeline;

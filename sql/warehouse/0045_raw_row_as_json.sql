-- An exchange row's raw row (源记录原文) is stored as json, the text ebis wrote, instead of
-- jsonb. PostgreSQL parses a jsonb value into its binary tree on every write, which a
-- first load pays once per row and a catch-up once per upserted row: copying 1,000,000
-- rows of a 560-byte raw row took 6.5–8.3 s into a jsonb column and 4.4–4.7 s into a json
-- one (which only checks the text is JSON), on this project's 2-core machines. Nothing
-- reads the raw row as jsonb: ebis reads one value of it (->>, and json_each_text, in a
-- timestamp source's key scan), analysts cannot read it at all, and an administrator can
-- cast it (raw_row::jsonb). json also keeps what the source held as it was read: the
-- source's column order.
--
-- The apply compares the raw row as text to tell a changed row from the same row read
-- again: ebis writes a row's text the same way each time. A row converted here holds
-- jsonb's rendering (keys sorted, spaces after colons); the first time it is read again
-- it differs as text and is rewritten once, with the same values.
--
-- Each table is rewritten, with its indexes: about as long as copying it.

do $$
declare
    t regclass;
begin
    for t in
        select c.oid::regclass
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attname = 'raw_row' and not a.attisdropped
        where n.nspname = 'exchange' and c.relkind = 'r' and a.atttypid = 'jsonb'::regtype
        order by c.relname
    loop
        execute format('alter table %s alter column raw_row type json using raw_row::json', t);
    end loop;
end $$;

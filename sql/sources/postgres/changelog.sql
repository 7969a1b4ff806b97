-- ebis change table for PostgreSQL (changelog capture), in its own schema.
--
-- A trigger on each captured table appends one row per row change: the table (as the
-- mappings name it) and the row's key as a JSON array; an update that changes the key
-- logs the old key too. ebis reads the keys after its position in sequence order and
-- fetches the current rows; it never writes here (but for deleting rows it has stored,
-- when capture.purge_every is set). Sequence numbers can commit out of order or be
-- skipped by rollbacks; ebis waits for such gaps and records their fate.
CREATE SCHEMA IF NOT EXISTS ebis_capture;

CREATE TABLE IF NOT EXISTS ebis_capture.change (
    seq        bigserial   PRIMARY KEY,
    table_name text        NOT NULL,
    row_key    text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE ebis_capture.change IS 'ebis change log (written by triggers, read by ebis)';

-- The trigger function: its first argument is the table's name as the mappings write
-- it, the others the key columns. It runs with its owner's rights (the bureau's own
-- accounts need no grant on the change table) and a fixed search_path.
CREATE OR REPLACE FUNCTION ebis_capture.log_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_key text;
    old_key text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT jsonb_agg(to_jsonb(NEW) -> a.k ORDER BY a.o)::text INTO new_key
          FROM unnest(TG_ARGV[1:]) WITH ORDINALITY AS a(k, o);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT jsonb_agg(to_jsonb(OLD) -> a.k ORDER BY a.o)::text INTO old_key
          FROM unnest(TG_ARGV[1:]) WITH ORDINALITY AS a(k, o);
    END IF;
    IF old_key IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
        INSERT INTO ebis_capture.change (table_name, row_key) VALUES (TG_ARGV[0], old_key);
    END IF;
    IF new_key IS NOT NULL THEN
        INSERT INTO ebis_capture.change (table_name, row_key) VALUES (TG_ARGV[0], new_key);
    END IF;
    RETURN NULL;
END
$$;

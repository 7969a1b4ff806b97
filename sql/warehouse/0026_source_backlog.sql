-- What a source keeps for ebis and ebis has not confirmed yet, in bytes, where the capture
-- mode can tell: a PostgreSQL logical replication slot's retained WAL. A stopped or
-- failing ebis makes it grow (the server keeps that WAL on its own disk), so operators
-- watch it beside the lag; NULL for modes that keep nothing on the source's disk for
-- ebis alone.
alter table ebis.source_status add column if not exists source_backlog_bytes bigint;
alter table ebis.source_status add column if not exists source_backlog_at timestamptz;

comment on column ebis.source_status.source_backlog_bytes is
  'bytes the source keeps for ebis (a logical slot''s retained WAL), when last read';

-- Purging of source change tables (changelog capture with `capture.purge_every`): how
-- many change rows ebis has deleted at each source, below positions this warehouse had
-- already stored, and when it last did.
alter table ebis.source_status
    add column changes_purged bigint not null default 0,
    add column last_purge_at timestamptz;
comment on column ebis.source_status.changes_purged is '累计清理的源端变更表记录数（仅清理已入库位置之前的记录）';
comment on column ebis.source_status.last_purge_at is '最近一次清理源端变更表的时间';

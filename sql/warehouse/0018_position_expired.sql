-- A stored position a source can no longer resume from (a change table truncated past it,
-- Change Tracking's minimum valid version passed it, a binary log or slot removed) no
-- longer stops the source: ebis records why, takes a new head, and snapshots every table
-- again while streaming goes on from that head; rows gone meanwhile are found by key
-- comparison. The source's native versions may start again below the ones already stored
-- (a recreated change table numbers from 1), so each checkpoint carries a base added to
-- every version it reads: the new rows always win over the old.
alter table ebis.checkpoint add column version_base bigint not null default 0;
comment on column ebis.checkpoint.version_base is '版本基数：位点失效重新快照后加在来源版本号上，保证新读取的版本总大于已入库的版本';

alter table ebis.source_status
  add column resnapshots integer not null default 0,
  add column last_resnapshot_at timestamptz,
  add column last_resnapshot_reason text;
comment on column ebis.source_status.resnapshots is '因位点失效而重新快照的次数';
comment on column ebis.source_status.last_resnapshot_at is '最近一次因位点失效重新快照的时间';
comment on column ebis.source_status.last_resnapshot_reason is '最近一次位点失效的原因（不含数据值）';

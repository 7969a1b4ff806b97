-- Snapshot progress in the checkpoint (a snapshot resumes where it stopped), and the
-- indexes the capture path needs.

alter table ebis.checkpoint add column snapshot jsonb;
comment on column ebis.checkpoint.snapshot is '进行中的快照：开始前的变更位置、当前表与已读到的主键（完成后为空）';

alter table ebis.checkpoint add column mode text;
comment on column ebis.checkpoint.mode is '采集方式（与配置不符时拒绝继续，避免版本混用）';

create index gap_log_source on ebis.gap_log (source, at);

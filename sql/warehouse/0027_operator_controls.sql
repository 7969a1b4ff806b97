-- What operators need around a running source.
--
-- An error that has cleared stays visible as cleared (with when it happened and when it
-- cleared) instead of vanishing: an operator arriving after a night's outage sees it.
alter table ebis.source_status
  add column if not exists cleared_error text,
  add column if not exists cleared_error_at timestamptz,
  add column if not exists error_cleared_at timestamptz;
comment on column ebis.source_status.cleared_error is '最近一次已消除的错误（不含数据值）';
comment on column ebis.source_status.cleared_error_at is '该错误发生的时间';
comment on column ebis.source_status.error_cleared_at is '该错误消除（来源恢复）的时间';

-- `ebis reset-source` asks for a source to start over from a new head: the next run
-- snapshots every table again while streaming from that head (rows gone meanwhile are
-- found by key comparison), as when a stored position expires. The request is the
-- reason shown in status; the checkpoint written by the restart clears it.
alter table ebis.checkpoint add column if not exists reset_requested text;
comment on column ebis.checkpoint.reset_requested is '运维请求从新位点重新快照的原因（ebis reset-source），下一次运行执行后清除';

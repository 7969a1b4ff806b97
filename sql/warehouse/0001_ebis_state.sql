-- Pipeline state: checkpoints, source status, quarantine, coverage, the changelog gap log.
--
-- Only ebis writes here. A checkpoint is updated in the same transaction as the exchange
-- rows it covers, so a crash can never leave it ahead of the data.

comment on schema ebis is 'ebis 管道状态：检查点、来源状态、隔离区、覆盖范围';

create table ebis.checkpoint (
    source text primary key,
    position jsonb not null,
    position_summary text not null,
    updated_at timestamptz not null default now()
);
comment on table ebis.checkpoint is '检查点：每个来源下次从何处继续读取（与所覆盖的数据在同一事务中更新）';
comment on column ebis.checkpoint.source is '来源名称';
comment on column ebis.checkpoint.position is '位置（JSON，按采集方式）';
comment on column ebis.checkpoint.position_summary is '位置摘要（供人阅读）';
comment on column ebis.checkpoint.updated_at is '更新时间';

create table ebis.source_status (
    source text primary key,
    bureau text not null check (bureau in ('aic', 'ntax', 'ltax', 'qts')),
    division text not null,
    dialect text not null,
    mode text not null,
    state text not null default 'stopped'
        check (state in ('starting', 'snapshotting', 'streaming', 'retrying', 'failed', 'stopped')),
    last_poll_at timestamptz,
    last_change_at timestamptz,
    last_applied_at timestamptz,
    complete_up_to timestamptz,
    rows_applied bigint not null default 0,
    rows_quarantined bigint not null default 0,
    open_gaps integer not null default 0,
    last_error text,
    last_error_at timestamptz,
    updated_at timestamptz not null default now()
);
comment on table ebis.source_status is '来源状态：运行状态、最近轮询、最近变更、完整至、错误';
comment on column ebis.source_status.source is '来源名称';
comment on column ebis.source_status.bureau is '部门（aic 工商, ntax 国税, ltax 地税, qts 质监）';
comment on column ebis.source_status.division is '行政区划代码';
comment on column ebis.source_status.dialect is '数据库类型';
comment on column ebis.source_status.mode is '采集方式（changelog 变更表, timestamp 时间戳）';
comment on column ebis.source_status.state is '运行状态';
comment on column ebis.source_status.last_poll_at is '最近一次轮询时间';
comment on column ebis.source_status.last_change_at is '最近入库变更的源端时间';
comment on column ebis.source_status.last_applied_at is '最近一次入库时间';
comment on column ebis.source_status.complete_up_to is '完整至：此时刻之前源端提交的变更均已入库';
comment on column ebis.source_status.rows_applied is '累计入库记录数';
comment on column ebis.source_status.rows_quarantined is '累计隔离记录数';
comment on column ebis.source_status.open_gaps is '未决的变更序号缺口数';
comment on column ebis.source_status.last_error is '最近错误（不含业务数据）';
comment on column ebis.source_status.last_error_at is '最近错误时间';
comment on column ebis.source_status.updated_at is '更新时间';

create table ebis.quarantine (
    id bigserial primary key,
    source text not null,
    source_table text not null,
    record_kind text not null,
    source_key text not null,
    field text not null,
    reason text not null,
    raw_value text,
    raw_row jsonb not null,
    mapping_version text not null,
    first_seen timestamptz not null default now(),
    last_seen timestamptz not null default now(),
    seen_count integer not null default 1,
    resolved_at timestamptz,
    unique (source, record_kind, source_key)
);
comment on table ebis.quarantine is '隔离区：无法映射的源记录，含原因与原始值；源端修正后自动标记已解决';
comment on column ebis.quarantine.source is '来源名称';
comment on column ebis.quarantine.source_table is '源表';
comment on column ebis.quarantine.record_kind is '记录类型（交换表）';
comment on column ebis.quarantine.source_key is '源记录主键';
comment on column ebis.quarantine.field is '出错的规范字段';
comment on column ebis.quarantine.reason is '原因';
comment on column ebis.quarantine.raw_value is '原始值';
comment on column ebis.quarantine.raw_row is '源记录原文';
comment on column ebis.quarantine.mapping_version is '映射版本';
comment on column ebis.quarantine.first_seen is '首次出现';
comment on column ebis.quarantine.last_seen is '最近出现';
comment on column ebis.quarantine.seen_count is '出现次数';
comment on column ebis.quarantine.resolved_at is '解决时间（该记录后来映射成功或在源端删除）';
create index quarantine_open on ebis.quarantine (source) where resolved_at is null;

create table ebis.coverage (
    bureau text not null check (bureau in ('aic', 'ntax', 'ltax', 'qts')),
    division text not null,
    source text not null,
    connected_since timestamptz not null default now(),
    primary key (bureau, division, source)
);
comment on table ebis.coverage is '覆盖范围：各部门已接入的行政区划（比对只在已接入的区划内报告缺失）';
comment on column ebis.coverage.bureau is '部门';
comment on column ebis.coverage.division is '行政区划代码';
comment on column ebis.coverage.source is '接入该区划的来源';
comment on column ebis.coverage.connected_since is '接入时间';

create table ebis.gap_log (
    id bigserial primary key,
    source text not null,
    from_seq bigint not null,
    to_seq bigint not null,
    fate text not null check (fate in ('detected', 'filled', 'expired')),
    at timestamptz not null default now()
);
comment on table ebis.gap_log is '变更序号缺口日志：发现、补齐或超时放弃';
comment on column ebis.gap_log.source is '来源名称';
comment on column ebis.gap_log.from_seq is '起始序号';
comment on column ebis.gap_log.to_seq is '结束序号（含）';
comment on column ebis.gap_log.fate is '结果（detected 发现, filled 补齐, expired 超时放弃）';
comment on column ebis.gap_log.at is '时间';

create view ebis.replication_lag as
select s.source, s.bureau, s.division, s.mode, s.state,
       extract(epoch from now() - s.complete_up_to)::numeric(12, 1) as lag_seconds,
       s.complete_up_to, s.last_poll_at, s.last_applied_at, s.rows_applied,
       s.rows_quarantined, s.open_gaps, s.last_error, s.last_error_at
from ebis.source_status s;
comment on view ebis.replication_lag is '复制延迟：每个来源的延迟秒数与状态';

-- Comments the provenance columns every exchange table carries (used by later migrations).
create function ebis.comment_provenance(t regclass) returns void language plpgsql as $$
declare
    labels constant text[][] := array[
        ['source', '来源名称'],
        ['bureau', '部门（aic 工商, ntax 国税, ltax 地税, qts 质监）'],
        ['division', '行政区划代码'],
        ['source_key', '源记录主键'],
        ['change_position', '读取时的变更位置'],
        ['change_version', '变更版本（较旧的读取不会覆盖较新的）'],
        ['source_commit_time', '源端提交时间（已知时）'],
        ['applied_at', '入库时间'],
        ['mapping_version', '映射版本（映射文件内容的哈希）'],
        ['raw_row', '源记录原文（JSON）'],
        ['deleted_at', '源端删除时间（空表示仍存在）']];
    i int;
begin
    for i in 1 .. array_length(labels, 1) loop
        execute format('comment on column %s.%I is %L', t, labels[i][1], labels[i][2]);
    end loop;
end $$;

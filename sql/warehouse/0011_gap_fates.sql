-- What became of changelog gaps beyond "filled" and "expired", and what status shows of it.
--
-- A gap is settled as rolled back as soon as every transaction that could hold it has
-- ended (when the reading account may see open transactions), so rollbacks no longer hold
-- lag back until the gap timeout. An expired gap is still watched for `capture.gap_watch`:
-- a transaction longer than the timeout is read when it commits ("late"), instead of
-- being lost; a watch that ends without a commit is "abandoned".
alter table ebis.gap_log drop constraint gap_log_fate_check;
alter table ebis.gap_log add constraint gap_log_fate_check
    check (fate in ('detected', 'filled', 'expired', 'late', 'rolled_back', 'abandoned'));
comment on column ebis.gap_log.fate is '结果（detected 发现, filled 补齐, expired 超时（继续观察）, late 超时后补齐, rolled_back 已回滚, abandoned 停止观察）';

alter table ebis.source_status
    add column expired_gaps integer not null default 0,
    add column late_changes bigint not null default 0;
comment on column ebis.source_status.expired_gaps is '已超时、仍在观察的变更序号缺口数';
comment on column ebis.source_status.late_changes is '累计迟到的变更数（超时后才提交、随后读到的变更；时间戳方式下键值比对补回的行）';

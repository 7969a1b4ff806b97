-- Which source tables, and which record kinds of each, a source's capture covers. A
-- mapping added later (a new table, or a new record kind from a table already captured)
-- is not in it: `ebis run` snapshots that table while streaming goes on, so the rows that
-- existed before its capture began arrive too. Checkpoints written before this column
-- existed count as covering the mappings of the first run after it.
alter table ebis.checkpoint add column captured jsonb;
comment on column ebis.checkpoint.captured is '已采集范围：源表 → 已快照并持续采集的记录类型（新增映射时据此补做快照）';

-- report.completeness, the analysts' answer to "how far can each bureau's data be trusted
-- right now", failed as a whole ("cannot subtract infinite timestamps") whenever one
-- bureau's records were not in the enterprise base yet. compare.completeness says
-- -infinity then, from a source's first load until the drain that takes it in, and the
-- view subtracted that from now() for lag_seconds: README's analyst query on it errored
-- during every first load, for every bureau alike.
--
-- Now such a row reads complete_at NULL and lag_seconds NULL: complete nowhere yet, as the
-- work lists' summary sheet reads it ("尚不完整"). compare.completeness, which the
-- comparison reads, keeps -infinity.
create or replace view report.completeness as
select c.bureau, compare.bureau_label(c.bureau) as bureau_label, c.division,
       core.division_name(c.division) as division_name,
       case when isfinite(c.complete_at) then c.complete_at end as complete_at,
       case when isfinite(c.complete_at) then extract(epoch from now() - c.complete_at)::float8 end as lag_seconds
from compare.completeness c;
comment on column report.completeness.complete_at is
    '数据完整至（此前的变更均已入库；空：尚未完成首次同步） (complete up to: every change before it is in; empty: not complete yet)';
comment on column report.completeness.lag_seconds is '延迟秒数（空：尚未完成首次同步） (lag, seconds; empty: not complete yet)';

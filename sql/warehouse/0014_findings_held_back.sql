-- Findings a bureau can trust: each run says what completeness held back and which
-- rejected rows its findings may rest on; resolutions are counted; an org-code conflict
-- lands on the bureaus that hold the codes.

-- While a run collects candidates (`ebis.all_candidates` on), completeness is set aside
-- but coverage still counts: a finding in a division a bureau does not cover is never a
-- candidate, one it covers but is not complete for yet is "held back".
create or replace function compare.settled(involved text[], d text, evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(exists (
        select 1 from compare.completeness c
        where c.bureau = b and c.division = d
          and (c.complete_at >= coalesce(evidence, '-infinity')
               or coalesce(current_setting('ebis.all_candidates', true), '') = 'on'))), true)
    from unnest(involved) b
$$;

create or replace function compare.settled_everywhere(involved text[], evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(coalesce((select min(coalesce(c.complete_at, '-infinity')) >= coalesce(evidence, '-infinity')
                                              or coalesce(current_setting('ebis.all_candidates', true), '') = 'on'
                                       from compare.completeness c where c.bureau = b), false)), true)
    from unnest(involved) b
$$;

-- The completeness condition of a rule view, for a row of it: every rule but the
-- city-level unlicensed-business reports rests on its involved bureaus in its division.
create function compare.row_settled(rule text, involved text[], d text, evidence timestamptz) returns boolean
language sql stable as $$
    select case when rule = 'unlicensed_business'
                then compare.settled_everywhere(array(select b from unnest(involved) b where b = 'aic'), evidence)
                else compare.settled(involved, d, evidence) end
$$;
comment on function compare.row_settled(text, text[], text, timestamptz) is '某条比对结果所依据的部门是否均已完整至其证据时间';

-- 7 The org code a tax bureau holds differs from the one QTS issued; or one registration
-- number carries several (valid) codes — then each bureau holding a code other than the
-- one QTS issued must act (all holders, when QTS issued none).
create or replace view compare.org_code_conflict
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with held as (
    select i.enterprise_key, i.bureau, i.org_code
    from core.identifier i join core.enterprise e using (enterprise_key)
    where i.record_kind = 'tax_registration' and i.org_code_valid and e.org_code is not null
      and i.org_code <> e.org_code
    union
    select coalesce(e.enterprise_key, c.reg_no), i.bureau, i.org_code
    from core.identifier_conflict c
    join core.identifier i on i.reg_no = c.reg_no and i.org_code_valid
    left join core.enterprise e on e.reg_no = c.reg_no and e.aic_status is not null
    where e.org_code is null or i.org_code <> e.org_code
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_object_agg(bureau || ':' || org_code, org_code) as codes
    from held group by enterprise_key
)
select 'org_code_conflict'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus,
       jsonb_build_object('qts_issued', e.org_code, 'held', p.codes),
       null::date, compare.greatest_seen(e, array['qts'] || p.bureaus), array['qts'] || p.bureaus
from per p join core.enterprise e using (enterprise_key)
where compare.settled(array['qts'] || p.bureaus, e.division, compare.greatest_seen(e, array['qts'] || p.bureaus));

alter table compare.run
    add column held_back jsonb not null default '{}',
    add column rejections jsonb not null default '{}';
comment on column compare.run.held_back is '因部门数据尚未完整而暂不报告的候选结果数（按部门）';
comment on column compare.run.rejections is '本次比对时各部门未解决的隔离记录数（按部门、记录类型）；依据这些部门的结果可能有误';

-- One comparison run: new findings are recorded, seen ones touched, and those no longer
-- found are resolved — but only once every bureau they rest on is complete past the time
-- they were last seen (a lagging source does not resolve anything). The candidates are
-- collected once with completeness set aside: those it holds back are counted per bureau
-- that is not complete yet. A finding whose enterprise appears in a bureau's unresolved
-- rejected rows says so (`detail.unresolved_rejections`); the run records the open
-- rejections per bureau and record kind.
create or replace function compare.refresh() returns bigint
language plpgsql as $$
declare
    run_id bigint;
    n_new integer;
    n_resolved integer;
    n_open integer;
begin
    insert into compare.run (as_of) values (compare.as_of()) returning id into run_id;
    perform set_config('ebis.mask_ids', 'on', true);
    perform set_config('ebis.all_candidates', 'on', true);
    create temp table ebis_candidates on commit drop as select * from compare.current;
    perform set_config('ebis.all_candidates', 'off', true);
    perform set_config('ebis.mask_ids', 'off', true);
    create temp table ebis_current on commit drop as
        select * from ebis_candidates c
        where compare.row_settled(c.rule, c.involved, c.division, c.evidence_at);
    update compare.run set held_back = coalesce((
        select jsonb_object_agg(b, n) from (
            select b, count(*) as n
            from ebis_candidates c cross join unnest(c.involved) b
            where not compare.row_settled(c.rule, c.involved, c.division, c.evidence_at)
              and not compare.row_settled(c.rule, array[b], c.division, c.evidence_at)
            group by b) x), '{}')
    where id = run_id;

    -- Identifier-like values of the rows each bureau's mappings rejected, normalized as
    -- the `identifier` transform does.
    create temp table ebis_rejected_ids on commit drop as
        select distinct s.bureau, upper(regexp_replace(v.value, '[-.[:space:]]', '', 'g')) as value
        from ebis.quarantine q
        join ebis.source_status s using (source)
        cross join lateral jsonb_each_text(q.raw_row) v
        where q.resolved_at is null and length(v.value) between 9 and 40;
    create index on ebis_rejected_ids (value);
    update ebis_current c set detail = c.detail || jsonb_build_object('unresolved_rejections', r.bureaus)
    from (
        select c2.rule, c2.subject, jsonb_agg(distinct q.bureau order by q.bureau) as bureaus
        from ebis_current c2
        join core.enterprise e on e.enterprise_key = c2.enterprise_key
        join ebis_rejected_ids q
          on q.value in (e.reg_no, e.org_code, e.ntax_taxpayer_id, e.ltax_taxpayer_id)
         and q.bureau = any(c2.involved)
        group by c2.rule, c2.subject) r
    where r.rule = c.rule and r.subject = c.subject;
    update compare.run set rejections = coalesce((
        select jsonb_object_agg(bureau, kinds) from (
            select bureau, jsonb_object_agg(record_kind, n) as kinds from (
                select s.bureau, q.record_kind, count(*) as n
                from ebis.quarantine q join ebis.source_status s using (source)
                where q.resolved_at is null
                group by s.bureau, q.record_kind) k
            group by bureau) b), '{}')
    where id = run_id;

    with up as (
        insert into compare.finding as f (rule, subject, enterprise_key, org_code, reg_no, enterprise_name,
                                          division, bureaus, involved, detail, since, first_seen, last_seen,
                                          first_run, last_run)
        select c.rule, c.subject, c.enterprise_key, c.org_code, c.reg_no, c.enterprise_name, c.division,
               c.bureaus, c.involved, c.detail, c.since, now(), now(), run_id, run_id
        from ebis_current c
        on conflict (rule, subject) do update set
            enterprise_key = excluded.enterprise_key, org_code = excluded.org_code, reg_no = excluded.reg_no,
            enterprise_name = excluded.enterprise_name, division = excluded.division,
            bureaus = excluded.bureaus, involved = excluded.involved, detail = excluded.detail,
            since = excluded.since, last_seen = now(), last_run = run_id,
            first_seen = case when f.resolved_at is null then f.first_seen else now() end,
            first_run = case when f.resolved_at is null then f.first_run else run_id end,
            resolved_at = null
        returning (xmax = 0 or f.first_run = run_id) as is_new)
    select count(*) filter (where is_new) into n_new from up;
    -- The run's own clock, not the transaction start: a resolution belongs to the run that
    -- made it (compare.run.started_at is clock time too).
    update compare.finding f set resolved_at = clock_timestamp()
    where f.resolved_at is null and f.last_run <> run_id
      and compare.settled(f.involved, f.division, f.last_seen);
    get diagnostics n_resolved = row_count;
    select count(*) into n_open from compare.finding where resolved_at is null;
    update compare.run set finished_at = clock_timestamp(), open_findings = n_open,
        new_findings = n_new, resolved_findings = n_resolved
    where id = run_id;
    return run_id;
end $$;
comment on function compare.refresh() is '执行一次比对：记录新发现、更新已有发现、标记已解决；统计因完整性暂缓的候选结果与未解决的隔离记录';

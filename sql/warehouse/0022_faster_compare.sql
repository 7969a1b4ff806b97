-- A comparison that keeps up with the pipeline.
--
-- A full run does its work once per run, not once per enterprise. Timed on 200,000
-- enterprises (13.5 s a run): 3.5 s went to JIT-compiling the candidates query, and most
-- of the rest to functions the rule views call on every row — the settings
-- (compare.params was pulled up into each view, so each setting was read again per row)
-- and the completeness check (compare.settled ran a query on compare.completeness per
-- row, even while a run collects every candidate and checks completeness set-wise), and
-- sorts of temporary tables the planner had no statistics for.
--
-- And a run is incremental when it can be: only the enterprises the base refreshed since
-- the last run (core.refresh_enterprises logs them in compare.changed) and those whose
-- findings the last run held back are re-evaluated, with the two rules that start from
-- exchange records rather than an enterprise (unlicensed business reports, revocation
-- requests) evaluated whole. A run is full when there is no earlier run, when what the
-- rules depend on beyond the records changed since (the as-of date — so a new day's due
-- dates are found —, the settings, the coverage), or when more enterprises changed than
-- an incremental run is worth.

-- The settings, read once per query: a function in FROM is run once and its row reused.
create function compare.params_now(
    out as_of date, out tax_registration_days int, out aic_closed_grace_days int,
    out tax_closed_grace_days int, out org_code_days int, out revocation_request_days int)
language plpgsql stable as $$
begin
    as_of := compare.as_of();
    tax_registration_days := compare.days('tax_registration_days');
    aic_closed_grace_days := compare.days('aic_closed_grace_days');
    tax_closed_grace_days := compare.days('tax_closed_grace_days');
    org_code_days := compare.days('org_code_days');
    revocation_request_days := compare.days('revocation_request_days');
end $$;

create or replace view compare.params as
select p.as_of, p.tax_registration_days, p.aic_closed_grace_days, p.tax_closed_grace_days,
       p.org_code_days, p.revocation_request_days
from compare.params_now() p;
comment on view compare.params is '比对参数（基准日与各期限天数）';

-- The completeness checks the rule views make, as expressions the planner inlines: while
-- a run collects every candidate (ebis.all_candidates), the query on completeness is
-- never made (the run checks coverage and completeness set-wise).
create function compare.settled_check(involved text[], d text, evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(exists (
        select 1 from compare.completeness c
        where c.bureau = b and c.division = d and c.complete_at >= coalesce(evidence, '-infinity'))), true)
    from unnest(involved) b
$$;

create function compare.settled_everywhere_check(involved text[], evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(coalesce((select min(coalesce(c.complete_at, '-infinity')) >= coalesce(evidence, '-infinity')
                                       from compare.completeness c where c.bureau = b), false)), true)
    from unnest(involved) b
$$;

create or replace function compare.settled(involved text[], d text, evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(current_setting('ebis.all_candidates', true), '') = 'on'
           or compare.settled_check(involved, d, evidence)
$$;
comment on function compare.settled(text[], text, timestamptz) is '所涉部门在该区划是否均已完整至证据时间';

create or replace function compare.settled_everywhere(involved text[], evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(current_setting('ebis.all_candidates', true), '') = 'on'
           or compare.settled_everywhere_check(involved, evidence)
$$;
comment on function compare.settled_everywhere(text[], timestamptz) is '所涉部门在其覆盖的全部区划是否均已完整至证据时间';


-- Enterprises the base refreshed (inserted, changed or removed) since the last comparison
-- run; each run takes what it sees.
create table compare.changed (enterprise_key text collate "C" primary key);
comment on table compare.changed is '自上次比对以来企业基础信息有变化的企业（增量比对据此重算）';

create or replace function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
begin
    if cardinality(keys) > 5000 then
        perform core.refresh_enterprises_bulk(keys);
    else
        perform core.refresh_enterprises_by_key(keys);
    end if;
    insert into compare.changed
    select distinct k from unnest(keys) k where k is not null
    on conflict do nothing;
end $$;

-- Candidate findings the last run held back (a bureau they rest on was not complete up
-- to their evidence): the next incremental run looks at them again.
create table compare.held (
    rule text collate "C" not null,
    subject text collate "C" not null,
    enterprise_key text,
    primary key (rule, subject)
);
comment on table compare.held is '上次比对因部门数据尚未完整而暂缓的候选结果（下次增量比对重新判断）';

alter table compare.run
    add column kind text not null default 'full' check (kind in ('full', 'incremental')),
    add column inputs text,
    add column evaluated bigint;
comment on column compare.run.kind is '比对方式：full 全量，incremental 增量（仅重算有变化的企业）';
comment on column compare.run.inputs is '规则所依据的参数与覆盖范围的摘要（变化时须全量比对）';
comment on column compare.run.evaluated is '增量比对重算的企业数';

-- What the rules depend on beyond the records: the as-of date, the settings, the coverage.
create function compare.inputs() returns text
language sql stable as $$
    select md5(concat_ws('|', compare.as_of(),
        (select string_agg(key || '=' || value, ',' order by key) from compare.setting),
        (select string_agg(bureau || '/' || division || '/' || source, ',' order by bureau, division, source)
           from ebis.coverage)))
$$;

-- The two rules that start from exchange records: evaluated whole in every run.
create function compare.whole_rules() returns text[]
language sql immutable as $$ select array['unlicensed_business', 'revocation_request_pending'] $$;

-- One comparison run over every enterprise (keys null) or over `keys` and the whole rules:
-- new findings are recorded, seen ones touched, and those no longer found are resolved —
-- but only once every bureau they rest on is complete past the time they were last seen
-- (a lagging source does not resolve anything). The candidates are collected once with
-- completeness set aside: those it holds back are counted per bureau that is not complete
-- yet, and kept for the next run. A finding whose enterprise appears in a bureau's
-- unresolved rejected rows says so (`detail.unresolved_rejections`); the run records the
-- open rejections per bureau and record kind.
drop function compare.refresh();
drop function compare.refresh_findings();
create function compare.refresh_findings(keys text[]) returns bigint
language plpgsql set jit = off set work_mem = '64MB' as $$
declare
    run_id bigint;
    n_new integer;
    n_resolved integer;
    n_open integer;
begin
    insert into compare.run (as_of, kind, inputs, evaluated)
    values (compare.as_of(), case when keys is null then 'full' else 'incremental' end, compare.inputs(),
            cardinality(keys))
    returning id into run_id;
    perform set_config('ebis.mask_ids', 'on', true);
    perform set_config('ebis.all_candidates', 'on', true);
    -- Two statements, each with its own cached plan: a full run's plan never serves an
    -- incremental one. (The rule of each branch of compare.current is a constant: the
    -- planner keeps the key condition in the keyed rules' branches, drops it from the
    -- whole ones.)
    if keys is null then
        create temp table ebis_candidates on commit drop as select * from compare.current;
    else
        create temp table ebis_candidates on commit drop as
            select * from compare.current c
            where (c.enterprise_key = any(keys) and c.rule <> all(compare.whole_rules()))
               or c.rule = any(compare.whole_rules());
    end if;
    perform set_config('ebis.all_candidates', 'off', true);
    perform set_config('ebis.mask_ids', 'off', true);
    analyze ebis_candidates;
    -- Completeness once, then set-wise. A candidate resting on a bureau that does not
    -- cover its division is none; one resting on a bureau not complete up to its
    -- evidence (in its division; everywhere, for city-level reports) is held back.
    create temp table ebis_complete on commit drop as
        select bureau, division, complete_at from compare.completeness;
    delete from ebis_candidates c
    where c.rule <> 'unlicensed_business'
      and exists (select 1 from unnest(c.involved) b
                  where not exists (select 1 from ebis_complete k
                                    where k.bureau = b and k.division = c.division));
    create temp table ebis_blocked on commit drop as
        select c.rule, c.subject, c.enterprise_key, b as bureau
        from ebis_candidates c
        cross join unnest(c.involved) b
        left join ebis_complete k on k.bureau = b and k.division = c.division
        where c.rule <> 'unlicensed_business'
          and not coalesce(k.complete_at >= coalesce(c.evidence_at, '-infinity'), false)
        union all
        select c.rule, c.subject, c.enterprise_key, 'aic'
        from ebis_candidates c
        where c.rule = 'unlicensed_business' and 'aic' = any(c.involved)
          and not coalesce((select min(coalesce(k.complete_at, '-infinity')) >= coalesce(c.evidence_at, '-infinity')
                            from ebis_complete k where k.bureau = 'aic'), false);
    analyze ebis_blocked;
    create temp table ebis_current on commit drop as
        select c.* from ebis_candidates c
        where not exists (select 1 from ebis_blocked x where x.rule = c.rule and x.subject = c.subject);
    update compare.run set held_back = coalesce((
        select jsonb_object_agg(bureau, n) from (
            select bureau, count(*) as n
            from (select distinct rule, subject, bureau from ebis_blocked) d
            group by bureau) x), '{}')
    where id = run_id;
    -- Every earlier held-back candidate was looked at again (its enterprise is among the
    -- keys, or its rule is evaluated whole): what is held back now replaces them.
    delete from compare.held;
    insert into compare.held select distinct rule, subject, enterprise_key from ebis_blocked;

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
    -- made it (compare.run.started_at is clock time too). An incremental run resolves only
    -- what it looked at.
    update compare.finding f set resolved_at = clock_timestamp()
    where f.resolved_at is null and f.last_run <> run_id
      and (keys is null or f.rule = any(compare.whole_rules()) or f.enterprise_key = any(keys))
      and compare.settled(f.involved, f.division, f.last_seen);
    get diagnostics n_resolved = row_count;
    select count(*) into n_open from compare.finding where resolved_at is null;
    update compare.run set finished_at = clock_timestamp(), open_findings = n_open,
        new_findings = n_new, resolved_findings = n_resolved
    where id = run_id;
    return run_id;
end $$;
comment on function compare.refresh_findings(text[]) is '执行一次比对（keys 为空时全量，否则仅重算这些企业及整体评估的规则）';

create index finding_enterprise on compare.finding (enterprise_key) where resolved_at is null;

-- Incremental runs are worth it up to this many changed enterprises; above, a full run is
-- as fast.
insert into compare.setting values
    ('incremental_max_enterprises', '50000', '增量比对的企业数上限（超过则全量比对）');

-- One comparison run (the base settled first): incremental when it can be, else full.
create function compare.refresh() returns bigint
language plpgsql as $$
declare
    keys text[];
    last_inputs text;
begin
    perform ebis.analyze_stale();
    perform core.settle();
    select r.inputs into last_inputs from compare.run r
    where r.finished_at is not null order by r.id desc limit 1;
    with taken as (delete from compare.changed returning enterprise_key)
    select array_agg(enterprise_key) into keys from taken;
    keys := coalesce(keys, '{}')
            || array(select h.enterprise_key from compare.held h where h.enterprise_key is not null);
    if last_inputs is distinct from compare.inputs()
       or cardinality(keys) > compare.days('incremental_max_enterprises') then
        return compare.refresh_findings(null);
    end if;
    return compare.refresh_findings(array(select distinct k from unnest(keys) k));
end $$;
comment on function compare.refresh() is '运行一次一致性比对（先处理完企业基础信息库待处理队列；能增量时只重算有变化的企业）';

-- A full run, whatever changed.
create function compare.refresh_full() returns bigint
language plpgsql as $$
begin
    perform ebis.analyze_stale();
    perform core.settle();
    delete from compare.changed;
    return compare.refresh_findings(null);
end $$;
comment on function compare.refresh_full() is '运行一次全量一致性比对';

grant select, insert, update, delete on compare.changed, compare.held to ebis_pipeline;
grant select on compare.changed, compare.held to ebis_analyst;

-- The two rules that aggregate identifiers per enterprise take the enterprise from the
-- aggregate, so a run over some keys narrows the aggregation to them.
create or replace view compare.org_code_conflict
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with held as (
    select i.enterprise_key, i.bureau, i.org_code
    from core.identifier i join core.enterprise e using (enterprise_key)
    where i.record_kind = 'tax_registration' and i.org_code_valid and e.org_code is not null
      and i.org_code <> e.org_code
    union
    -- (An AIC-registered enterprise's registration number with several codes in force:
    -- looked up per enterprise, so a run over some keys looks up only theirs.)
    select e.enterprise_key, i.bureau, i.org_code
    from core.enterprise e
    cross join lateral (
        select count(distinct c.org_code) as codes
        from core.identifier c
        where c.reg_no = e.reg_no and c.org_code_valid
          and not exists (select 1 from exchange.qts_code_voided v
                          where v.org_code = c.org_code and v.deleted_at is null)) c
    join core.identifier i on i.reg_no = e.reg_no and i.org_code_valid
    where e.aic_status is not null and c.codes > 1
      and (e.org_code is null or i.org_code <> e.org_code)
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_object_agg(bureau || ':' || org_code, org_code) as codes
    from held group by enterprise_key
)
select 'org_code_conflict'::text, p.enterprise_key, p.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus,
       jsonb_build_object('qts_issued', e.org_code, 'held', p.codes),
       null::date, compare.greatest_seen(e, array['qts'] || p.bureaus), array['qts'] || p.bureaus
from per p join core.enterprise e on e.enterprise_key = p.enterprise_key
where compare.settled(array['qts'] || p.bureaus, e.division, compare.greatest_seen(e, array['qts'] || p.bureaus));

create or replace view compare.invalid_identifier
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with bad as (
    select i.enterprise_key, i.bureau, f.field,
           case when f.field = 'taxpayer_id' then compare.visible_taxpayer_id(f.value) else f.value end as value
    from core.identifier i
    cross join lateral (values ('reg_no', i.reg_no, i.reg_no_valid),
                               ('org_code', i.org_code, i.org_code_valid),
                               ('taxpayer_id', i.taxpayer_id, i.taxpayer_id_valid)) f(field, value, valid)
    where (i.reg_no_valid is false or i.org_code_valid is false or i.taxpayer_id_valid is false)
      and f.value is not null and not f.valid
    union all
    select e.enterprise_key, 'aic', 'legal_rep_id_no', compare.visible_id(e.legal_rep_id_no)
    from core.enterprise e
    where e.legal_rep_id_no is not null and not core.is_id_card(e.legal_rep_id_no)
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_agg(jsonb_build_object('bureau', bureau, 'field', field, 'value', value) order by bureau, field) as bad
    from bad group by enterprise_key
)
select 'invalid_identifier'::text, p.enterprise_key, p.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus, jsonb_build_object('invalid', p.bad),
       null::date, compare.greatest_seen(e, p.bureaus), p.bureaus
from per p join core.enterprise e on e.enterprise_key = p.enterprise_key
where compare.settled(p.bureaus, e.division, compare.greatest_seen(e, p.bureaus));

-- Unlicensed-business reports, evaluated whole in every run: the registered enterprise of
-- a report's name is picked by key (aggregating whole enterprise rows per name cost 0.3 ms
-- a report, 4 s a run on a 1,000,000-enterprise city), then read once.
create or replace view compare.unlicensed_business
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'unlicensed_business'::text, 'U:' || u.source || '/' || u.source_key, m.enterprise_key, m.org_code,
       m.reg_no, u.name, coalesce(m.division, u.division), array['aic']::text[],
       jsonb_build_object('reported_by', u.bureau, 'name', u.name, 'address', u.address,
                          'matched', m.reg_no is not null, 'matched_reg_no', m.reg_no,
                          'address_matches', m.reg_no is not null and core.norm_text(u.address) = m.address_norm),
       u.applied_at::date, core.seen(u.source_commit_time, u.applied_at), array['aic', u.bureau]
from exchange.tax_unlicensed u
cross join lateral (select core.norm_text(u.name) as name_norm) n
left join lateral (
    -- The registered enterprise of that name with the smallest reg_no (an aggregate, so
    -- the name index is used whatever the statistics say).
    select (array_agg(e.enterprise_key order by e.reg_no, e.enterprise_key))[1] as enterprise_key
    from core.enterprise e
    where e.name_norm = n.name_norm and e.aic_status is not null) best on true
left join core.enterprise m on m.enterprise_key = best.enterprise_key
where u.deleted_at is null
  and compare.settled_everywhere(array['aic'], core.seen(u.source_commit_time, u.applied_at));

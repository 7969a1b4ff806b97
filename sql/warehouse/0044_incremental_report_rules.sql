-- The two rules that start from tax reports (revocation_request_pending,
-- unlicensed_business) follow what changed, like the others. They were evaluated whole in
-- every run, which set the floor of an incremental run: 1.8–2.3 s on a 1M-enterprise city
-- with nothing changed (bench compare), most of it these two rules (0.8 s grouping 48,000
-- revocation requests by registration number through the collation, 0.5 s matching
-- 25,000 reports' names) and touching their 38,700 findings again.
--
-- * A change log of the reports. Statement triggers on exchange.tax_revocation_request
--   and exchange.tax_unlicensed log what a statement touched, old and new rows: the
--   requests' registration numbers, the reports' subjects. The log has no key, so two
--   applies (national and local tax) never wait on each other or on a run taking the
--   log; a run takes what it sees and leaves what commits after.
-- * revocation_request_pending is a keyed rule: its subject is the enterprise. A run
--   looks again at the enterprises whose registration number a logged request names,
--   besides those the base changed. The rule is written from the enterprise (a semi-join
--   on the due requests, then the requests of each enterprise found), so a run over some
--   keys probes by index; a full run hashes the due requests.
-- * unlicensed_business is evaluated for the reports: logged ones, those whose name is a
--   changed enterprise's name now (a registration that now matches), those whose finding
--   names a changed enterprise (the match renamed, closed or moved away), and those held
--   back. Two expression indexes on the reports (name key, subject) make these probes.
-- * A finding that a run looked at and no longer found, but could not resolve because a
--   bureau it rests on is not complete up to when it was last seen, is kept in
--   compare.held like a held-back candidate: the next run looks at it again. Before, its
--   key was spent and it stayed open until the next full run, though nothing at all
--   still supported it.

create table compare.changed_request (reg_no text not null);
comment on table compare.changed_request is '自上次比对以来有变化的提请吊销记录的注册号（增量比对据此重算）';
create table compare.changed_report (subject text collate "C" not null);
comment on table compare.changed_report is '自上次比对以来有变化的无照经营报告（增量比对据此重算）';
grant select, insert, delete on compare.changed_request, compare.changed_report to ebis_pipeline;
grant select on compare.changed_request, compare.changed_report to ebis_analyst;

create function compare.report_subject(source text, source_key text) returns text
language sql immutable parallel safe as $$ select 'U:' || source || '/' || source_key $$;
comment on function compare.report_subject(text, text) is '无照经营报告的比对对象标识';

create function compare.on_request_change() returns trigger
language plpgsql set jit = off as $$
begin
    if tg_op <> 'DELETE' then
        insert into compare.changed_request select distinct n.reg_no from new_rows n where n.reg_no is not null;
    end if;
    if tg_op <> 'INSERT' then
        insert into compare.changed_request select distinct d.reg_no from old_rows d where d.reg_no is not null;
    end if;
    return null;
end $$;

create function compare.on_report_change() returns trigger
language plpgsql set jit = off as $$
begin
    -- (A report's subject is its source and key, which an update keeps.)
    if tg_op = 'DELETE' then
        insert into compare.changed_report select compare.report_subject(d.source, d.source_key) from old_rows d;
    else
        insert into compare.changed_report select compare.report_subject(n.source, n.source_key) from new_rows n;
    end if;
    return null;
end $$;

create trigger log_inserted after insert on exchange.tax_revocation_request
    referencing new table as new_rows for each statement execute function compare.on_request_change();
create trigger log_updated after update on exchange.tax_revocation_request
    referencing old table as old_rows new table as new_rows for each statement execute function compare.on_request_change();
create trigger log_deleted after delete on exchange.tax_revocation_request
    referencing old table as old_rows for each statement execute function compare.on_request_change();
create trigger log_inserted after insert on exchange.tax_unlicensed
    referencing new table as new_rows for each statement execute function compare.on_report_change();
create trigger log_updated after update on exchange.tax_unlicensed
    referencing new table as new_rows for each statement execute function compare.on_report_change();
create trigger log_deleted after delete on exchange.tax_unlicensed
    referencing old table as old_rows for each statement execute function compare.on_report_change();

-- Reports applied since the last run, before this migration, are in no log: the next run
-- is full (the marker a rebuild leaves).
insert into compare.changed values ('*') on conflict do nothing;

create index tax_unlicensed_subject on exchange.tax_unlicensed (compare.report_subject(source, source_key));
create index tax_unlicensed_name_key on exchange.tax_unlicensed (core.name_key(core.norm_text(name)));

create or replace view compare.revocation_request_pending
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'revocation_request_pending'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, array['aic']::text[],
       jsonb_build_object('requested_by', r.bureaus, 'requested_on', r.first_on),
       r.first_on + p.revocation_request_days, r.seen, array['aic'] || r.bureaus
from core.enterprise e
cross join compare.params p
cross join lateral (
    select array_agg(distinct q.bureau order by q.bureau) as bureaus, min(q.requested_on) as first_on,
           max(core.seen(q.source_commit_time, q.applied_at)) as seen
    from exchange.tax_revocation_request q
    where q.reg_no = e.reg_no and q.deleted_at is null and q.requested_on + p.revocation_request_days < p.as_of) r
where e.aic_status = 'active'
  -- (The same requests as a semi-join the planner can hash, so the per-enterprise
  -- aggregate above runs only for the enterprises that have one.)
  and e.reg_no in (select q.reg_no from exchange.tax_revocation_request q cross join compare.params p2
                   where q.deleted_at is null and q.requested_on + p2.revocation_request_days < p2.as_of)
  and compare.settled(array['aic'] || r.bureaus, e.division, r.seen);

create or replace view compare.unlicensed_business
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'unlicensed_business'::text, compare.report_subject(u.source, u.source_key), m.enterprise_key, m.org_code,
       m.reg_no, u.name, coalesce(m.division, u.division), array['aic']::text[],
       jsonb_build_object('reported_by', u.bureau, 'name', u.name, 'address', u.address,
                          'matched', m.reg_no is not null, 'matched_reg_no', m.reg_no,
                          'address_matches', m.reg_no is not null and core.norm_text(u.address) = m.address_norm),
       u.applied_at::date, core.seen(u.source_commit_time, u.applied_at), array['aic', u.bureau]
from exchange.tax_unlicensed u
left join lateral (
    -- The registered enterprise of that name with the smallest reg_no: the first entry of
    -- the name's range in enterprise_registered_name.
    select e.enterprise_key, e.org_code, e.reg_no, e.division, e.address_norm
    from core.enterprise e
    where core.name_key(e.name_norm) = core.name_key(core.norm_text(u.name)) and e.aic_status is not null
    order by e.reg_no, e.enterprise_key
    limit 1) m on true
where u.deleted_at is null
  and compare.settled_everywhere(array['aic'], core.seen(u.source_commit_time, u.applied_at));

-- A run: full when the inputs changed (a new as-of date, settings, coverage), after a
-- rebuild, or when too much changed; otherwise over the enterprises that changed or name
-- a changed request, and the reports `reports` names (see compare.refresh_findings).
create or replace function compare.refresh() returns bigint
language plpgsql as $$
declare
    keys text[];
    reg_nos text[];
    reports text[];
    last_inputs text;
begin
    perform ebis.analyze_stale();
    perform core.settle();
    select r.inputs into last_inputs from compare.run r
    where r.finished_at is not null order by r.id desc limit 1;
    with taken as (delete from compare.changed returning enterprise_key)
    select array_agg(enterprise_key) into keys from taken;
    with taken as (delete from compare.changed_request returning reg_no)
    select array_agg(distinct reg_no) into reg_nos from taken;
    with taken as (delete from compare.changed_report returning subject)
    select coalesce(array_agg(distinct subject), '{}') into reports from taken;
    keys := coalesce(keys, '{}')
            || array(select e.enterprise_key from core.enterprise e where e.reg_no = any(reg_nos))
            || array(select h.enterprise_key from compare.held h where h.enterprise_key is not null);
    if last_inputs is distinct from compare.inputs()
       or '*' = any(keys)
       or cardinality(keys) + cardinality(reports) > compare.days('incremental_max_enterprises') then
        return compare.refresh_findings(null, null);
    end if;
    return compare.refresh_findings(array(select distinct k from unnest(keys) k), reports);
end $$;
comment on function compare.refresh() is '运行一次一致性比对（先处理完企业基础信息库待处理队列；能增量时只重算有变化的企业与报告）';

create or replace function compare.refresh_full() returns bigint
language plpgsql as $$
begin
    perform ebis.analyze_stale();
    perform core.settle();
    delete from compare.changed;
    delete from compare.changed_request;
    delete from compare.changed_report;
    return compare.refresh_findings(null, null);
end $$;

drop function compare.refresh_findings(text[]);
drop function compare.whole_rules();

-- One comparison run over every enterprise and report (keys null) or over the enterprises
-- `keys` and the unlicensed-business reports `reports`, plus the reports a changed
-- enterprise may match or have matched, and those held back.
create function compare.refresh_findings(keys text[], reports text[]) returns bigint
language plpgsql set jit = off set work_mem = '64MB' as $$
declare
    run_id bigint;
    n_new integer;
    n_resolved integer;
    n_open integer;
begin
    if keys is not null then
        reports := array(select distinct s from unnest(
            reports
            || array(select compare.report_subject(u.source, u.source_key)
                     from exchange.tax_unlicensed u
                     where core.name_key(core.norm_text(u.name)) in (
                         select core.name_key(e.name_norm) from core.enterprise e
                         where e.enterprise_key = any(keys) and e.name_norm is not null))
            || array(select f.subject from compare.finding f
                     where f.enterprise_key = any(keys) and f.resolved_at is null
                       and f.rule = 'unlicensed_business')
            || array(select h.subject from compare.held h where h.rule = 'unlicensed_business')) s);
    end if;
    insert into compare.run (as_of, kind, inputs, evaluated)
    values (compare.as_of(), case when keys is null then 'full' else 'incremental' end, compare.inputs(),
            cardinality(keys))
    returning id into run_id;
    perform set_config('ebis.mask_ids', 'on', true);
    perform set_config('ebis.all_candidates', 'on', true);
    -- Two statements, each with its own cached plan: a full run's plan never serves an
    -- incremental one. (The rule of each branch of compare.current is a constant: the
    -- planner keeps the key condition in the keyed rules' branches, the subject condition
    -- in the reports'.)
    if keys is null then
        create temp table ebis_candidates on commit drop as select * from compare.current;
    else
        create temp table ebis_candidates on commit drop as
            select * from compare.current c
            where (c.rule <> 'unlicensed_business' and c.enterprise_key = any(keys))
               or (c.rule = 'unlicensed_business' and c.subject = any(reports));
    end if;
    perform set_config('ebis.all_candidates', 'off', true);
    perform set_config('ebis.mask_ids', 'off', true);
    analyze ebis_candidates (rule, subject, enterprise_key, division);
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
    analyze ebis_blocked (rule, subject);
    create temp table ebis_current on commit drop as
        select c.* from ebis_candidates c
        where not exists (select 1 from ebis_blocked x where x.rule = c.rule and x.subject = c.subject);
    analyze ebis_current (rule, subject, enterprise_key);
    update compare.run set held_back = coalesce((
        select jsonb_object_agg(bureau, n) from (
            select bureau, count(*) as n
            from (select distinct rule, subject, bureau from ebis_blocked) d
            group by bureau) x), '{}')
    where id = run_id;
    -- Every earlier held-back candidate was looked at again (its enterprise is among the
    -- keys, or its report among the reports): what is held back now replaces them.
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
    if exists (select 1 from ebis_rejected_ids) then
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
    end if;
    update compare.run set rejections = coalesce((
        select jsonb_object_agg(bureau, kinds) from (
            select bureau, jsonb_object_agg(record_kind, n) as kinds from (
                select s.bureau, q.record_kind, count(*) as n
                from ebis.quarantine q join ebis.source_status s using (source)
                where q.resolved_at is null
                group by s.bureau, q.record_kind) k
            group by bureau) b), '{}')
    where id = run_id;

    -- Findings seen before, in one join: touched (last seen, last run), their details
    -- as found now; one that had been resolved is open again from this run. The others
    -- are new. (One statement: the insert's snapshot does not see the update's rows, and
    -- picks the new ones from what the update returned instead of reading the table.)
    with seen as (
        update compare.finding f set
            enterprise_key = c.enterprise_key, org_code = c.org_code, reg_no = c.reg_no,
            enterprise_name = c.enterprise_name, division = c.division,
            bureaus = c.bureaus, involved = c.involved, detail = c.detail,
            since = c.since, last_seen = now(), last_run = run_id,
            first_seen = case when f.resolved_at is null then f.first_seen else now() end,
            first_run = case when f.resolved_at is null then f.first_run else run_id end,
            resolved_at = null
        from ebis_current c
        where f.rule = c.rule and f.subject = c.subject
        returning f.rule, f.subject, f.first_run = run_id as reopened
    ), added as (
        insert into compare.finding (rule, subject, enterprise_key, org_code, reg_no, enterprise_name,
                                     division, bureaus, involved, detail, since, first_seen, last_seen,
                                     first_run, last_run)
        select c.rule, c.subject, c.enterprise_key, c.org_code, c.reg_no, c.enterprise_name, c.division,
               c.bureaus, c.involved, c.detail, c.since, now(), now(), run_id, run_id
        from ebis_current c
        where not exists (select 1 from seen s where s.rule = c.rule and s.subject = c.subject)
        returning 1
    )
    select (select count(*) from seen where reopened) + (select count(*) from added) into n_new;
    -- The run's own clock, not the transaction start: a resolution belongs to the run that
    -- made it (compare.run.started_at is clock time too). An incremental run resolves only
    -- what it looked at. What it looked at and no longer found, but may not resolve yet (a
    -- bureau it rests on is behind), it keeps for the next run, as it keeps the held back.
    with looked as (
        select f.id, f.rule, f.subject, f.enterprise_key,
               compare.settled(f.involved, f.division, f.last_seen) as settled
        from compare.finding f
        where f.resolved_at is null and f.last_run <> run_id
          and (keys is null
               or (f.rule <> 'unlicensed_business' and f.enterprise_key = any(keys))
               or (f.rule = 'unlicensed_business' and f.subject = any(reports)))
    ), kept as (
        insert into compare.held select l.rule, l.subject, l.enterprise_key from looked l
        where not l.settled
        on conflict do nothing
    )
    update compare.finding f set resolved_at = clock_timestamp()
    from looked l where l.id = f.id and l.settled;
    get diagnostics n_resolved = row_count;
    select count(*) into n_open from compare.finding where resolved_at is null;
    update compare.run set finished_at = clock_timestamp(), open_findings = n_open,
        new_findings = n_new, resolved_findings = n_resolved
    where id = run_id;
    return run_id;
end $$;
comment on function compare.refresh_findings(text[], text[]) is '比对一次：全部（参数为空）或指定企业与无照经营报告；记录新发现、更新已有发现、标记已解决';

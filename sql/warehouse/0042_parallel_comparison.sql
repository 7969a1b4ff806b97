-- A full comparison on both cores, with less per-row work. Timed on a 1,000,000-enterprise
-- city (bench compare, 227,000 findings): a full run took 25–30 s, of which
--
-- * 19–22 s collecting the candidates (compare.current), on one core: every function
--   the rule views call (the settings, the completeness checks, the masking) was
--   parallel unsafe, PostgreSQL's default for a function, so no part of the query could
--   run in a worker. They only read tables and settings (a worker has the leader's
--   snapshot and settings): marked parallel safe, most rules' scans of core.enterprise
--   run in workers, 14.2–14.5 s.
-- * 5.5 s of that checking every legal representative's ID number again
--   (core.is_id_card, 5.5 µs a call here), though a full run's findings of it can only
--   change where the number did. A partial index holds the enterprises whose number
--   fails the check (5,400 in the simulated city): the index is built once in a rebuild
--   (2.9 s at 1M, with the other indexes) and kept up as the base refreshes, and the
--   rule reads it, 0.9 s. Collecting the candidates: 10.7–12.2 s.
-- * 5.7 s recording the 227,000 findings it found again: each went through the upsert's
--   speculative insert, and each row's foreign keys (first_run, last_run) were checked
--   by a query on compare.run per row (1.3 s each). The findings seen again are now
--   updated in one join and only the others inserted, 1.2 s; the two foreign keys are
--   gone: only compare.refresh_findings writes these columns, with the run it has just
--   inserted, and runs are never deleted.
--
-- The same warehouse's full run: 25–30 s → 16.7–17.7 s.

alter function compare.as_of() parallel safe;
alter function compare.days(text) parallel safe;
alter function compare.covers(text, text) parallel safe;
alter function compare.params_now() parallel safe;
alter function compare.greatest_seen(core.enterprise, text[]) parallel safe;
alter function compare.settled(text[], text, timestamptz) parallel safe;
alter function compare.settled_check(text[], text, timestamptz) parallel safe;
alter function compare.settled_everywhere(text[], timestamptz) parallel safe;
alter function compare.settled_everywhere_check(text[], timestamptz) parallel safe;
alter function compare.visible_id(text) parallel safe;
alter function compare.visible_taxpayer_id(text) parallel safe;
alter function compare.whole_rules() parallel safe;
-- (And the labels the analysts' views over the findings call: read-only too.)
alter function compare.bureau_label(text) parallel safe;
alter function compare.bureau_labels(text[]) parallel safe;
alter function compare.bureau_labels(jsonb) parallel safe;
alter function compare.status_label(text, text) parallel safe;
alter function compare.each_bureau_holds(jsonb) parallel safe;
alter function compare.describe(text, jsonb) parallel safe;
alter function core.division_name(text) parallel safe;

-- The rule invalid_identifier's condition on the legal representative, word for word, so
-- the planner reads the index for it.
create index enterprise_invalid_legal_rep_id on core.enterprise (enterprise_key)
    where legal_rep_id_no is not null and not core.is_id_card(legal_rep_id_no);

alter table compare.finding drop constraint finding_first_run_fkey;
alter table compare.finding drop constraint finding_last_run_fkey;
comment on column compare.finding.first_run is '首次发现的比对批次（compare.run.id）';
comment on column compare.finding.last_run is '最近一次发现的比对批次（compare.run.id）';

create or replace function compare.refresh_findings(keys text[]) returns bigint
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

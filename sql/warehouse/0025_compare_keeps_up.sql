-- A comparison run whose cost follows what changed. Timed on a 1,000,000-enterprise city
-- (bench compare): an incremental run with nothing changed took 5.8 s, of which
--
-- * 3.5 s the unlicensed-business rule, evaluated whole in every run: each report's name
--   was looked up in a hash index, and every registered enterprise of that name read
--   from the heap to pick the one with the smallest registration number (48 heap pages a
--   name in the simulated city, 613,000 in all). A B-tree on (name key, reg_no,
--   enterprise_key) of registered enterprises gives that enterprise as the first entry:
--   0.16 s. The name key is the normalized name itself, or 'md5:' and its MD5 when it is
--   longer than 1,000 bytes (a B-tree refuses entries over a third of a page, the reason
--   the hash index was chosen); normalized names are upper-cased, so no name equals a
--   key of that form.
-- * 0.9 s marking candidates whose enterprise appears among rejected rows, with no rejected
--   row at all (the planner, without statistics on the candidates, hashed every
--   enterprise): skipped when nothing is rejected, and the candidates analyzed.
-- * 0.8 s rewriting the 38,744 findings of the whole rules (and 5 s of a full run
--   rewriting 227,000): every run touches each finding it sees (last seen, last run), and
--   on full pages each new row version went to another page with an entry in each of the
--   finding's four indexes. Half-empty pages let them be updated in place (a heap-only
--   update, none of the indexed columns changes): 0.2 s and 0.9 s. Opportunistic pruning
--   reclaims the old versions on the page, with or without autovacuum.

create function core.name_key(name_norm text) returns text
language sql immutable parallel safe as $$
    select case when octet_length(name_norm) <= 1000 then name_norm else 'md5:' || md5(name_norm) end
$$;
comment on function core.name_key(text) is '企业名称的索引键（规范化名称；超过 1000 字节时为其 MD5）';

drop index core.enterprise_name_norm;
create index enterprise_registered_name on core.enterprise (core.name_key(name_norm), reg_no, enterprise_key)
    where aic_status is not null;

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
    -- The registered enterprise of that name with the smallest reg_no: the first entry of
    -- the name's range in enterprise_registered_name.
    select e.enterprise_key, e.org_code, e.reg_no, e.division, e.address_norm
    from core.enterprise e
    where core.name_key(e.name_norm) = core.name_key(n.name_norm) and e.aic_status is not null
    order by e.reg_no, e.enterprise_key
    limit 1) m on true
where u.deleted_at is null
  and compare.settled_everywhere(array['aic'], core.seen(u.source_commit_time, u.applied_at));

alter table compare.finding set (fillfactor = 50);

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

-- Every run touches the findings it sees, so compare.finding's changes since its last
-- analyze passed the threshold at each run (0.3 s of an incremental run at 1M): it is
-- analyzed when its number of rows moved by as much instead.
create or replace function ebis.analyze_stale() returns text[]
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    done text[] := '{}';
begin
    for t in
        select s.schemaname, s.relname
        from pg_stat_user_tables s
        join pg_class c on c.oid = s.relid
        where s.schemaname in ('ebis', 'exchange', 'core', 'compare')
          and case when s.relid = 'compare.finding'::regclass
                   then abs(s.n_live_tup - greatest(c.reltuples, 0)) > 50 + 0.1 * greatest(c.reltuples, 0)
                        or (c.reltuples < 0 and s.n_mod_since_analyze > 0)
                   else s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) end
        order by s.n_mod_since_analyze desc
    loop
        execute format('analyze %I.%I', t.schemaname, t.relname);
        done := done || (t.schemaname || '.' || t.relname);
    end loop;
    return done;
end $$;

-- A bulk refresh of a few percent of the base probes the tables by key. The set-wise
-- refresh (more than 5,000 enterprises) scanned every table it reads, without nested
-- loops: right for a first load, but during a catch-up each 10,000-change batch of a
-- 1,000,000-enterprise city cost 1.2 s of scans, where probing by key costs 0.55 s
-- (and 2.6 s against 3.1 s at 50,000). The caller now picks the plan's shape: scans
-- during a rebuild or above 5 % of the base, probes below.
alter function core.refresh_enterprises_bulk(text[]) reset enable_seqscan;
alter function core.refresh_enterprises_bulk(text[]) reset enable_nestloop;

create function core.refresh_enterprises_scanning(keys text[]) returns void
language plpgsql set enable_seqscan = on set enable_nestloop = off as $$
begin
    perform core.refresh_enterprises_bulk(keys);
end $$;

create function core.refresh_enterprises_probing(keys text[]) returns void
language plpgsql set enable_seqscan = off set enable_nestloop = on as $$
begin
    perform core.refresh_enterprises_bulk(keys);
end $$;

create or replace function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
begin
    if cardinality(keys) <= 5000 then
        perform core.refresh_enterprises_by_key(keys);
    elsif not core.rebuilding()
          and cardinality(keys) < 0.05 * (select greatest(c.reltuples, 0) from pg_class c
                                          where c.oid = 'core.enterprise'::regclass) then
        perform core.refresh_enterprises_probing(keys);
    else
        perform core.refresh_enterprises_scanning(keys);
    end if;
    if not core.rebuilding() then
        insert into compare.changed
        select distinct k from unnest(keys) k where k is not null
        on conflict do nothing;
    end if;
end $$;

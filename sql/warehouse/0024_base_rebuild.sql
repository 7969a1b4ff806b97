-- A first load's base built in one pass. After a bureau's first snapshot the base's queue
-- names every record, and taking it in statement by statement cost far more than the
-- load itself (a 200,000-row snapshot: 15 s to load, 17 s more until the base was
-- complete), because each drain re-resolved set-wise against tables that kept growing,
-- and every row went into the base's indexes one at a time. Now:
--
-- * When the queue names more identifiers than a quarter of those the base holds (at
--   least 20,000), core.drain takes the whole visible queue and rebuilds the base from the
--   exchange tables instead (core.rebuild_all): the base is emptied, its secondary
--   indexes dropped, everything resolved set-wise, the indexes built again in one sort
--   each. core.rebuild() does the same, and no longer truncates the queue: the statements
--   it did not see stay queued, and no apply waits for it.
-- * The set-wise refresh and resolve read only the columns they use (they carried every
--   exchange column, raw row included, through their sorts: a 200,000-row refresh sorted
--   178 MB on disk), with 64 MB of work memory.
--
-- Readers of core.identifier and core.enterprise wait while a rebuild runs (it holds
-- them exclusively, as TRUNCATE always did); sources never do.

-- True while core.rebuild_all runs (a transaction-local setting it sets).
create function core.rebuilding() returns boolean
language sql stable as $$
    select coalesce(current_setting('ebis.rebuilding', true), '') = 'on'
$$;

-- Refreshed enterprises are logged for the incremental comparison, except during a
-- rebuild, which logs the marker '*' (every enterprise) once.
create or replace function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
begin
    if cardinality(keys) > 5000 then
        perform core.refresh_enterprises_bulk(keys);
    else
        perform core.refresh_enterprises_by_key(keys);
    end if;
    if not core.rebuilding() then
        insert into compare.changed
        select distinct k from unnest(keys) k where k is not null
        on conflict do nothing;
    end if;
end $$;

-- The marker '*' in compare.changed (a rebuild) makes the next run full.
create or replace function compare.refresh() returns bigint
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
       or '*' = any(keys)
       or cardinality(keys) > compare.days('incremental_max_enterprises') then
        return compare.refresh_findings(null);
    end if;
    return compare.refresh_findings(array(select distinct k from unnest(keys) k));
end $$;

create or replace function core.refresh_enterprises_bulk(keys text[]) returns void
language plpgsql set enable_seqscan = on set enable_nestloop = off set jit = off set work_mem = '64MB' as $$
begin
    if core.rebuilding() then
        -- A rebuild's refresh sorts every enterprise once: in memory (1M: 180 MB).
        set local work_mem = '256MB';
    end if;
    create temp table ebis_refresh_keys on commit drop as
        select distinct k as key from unnest(keys) k where k is not null;
    analyze ebis_refresh_keys;
    delete from core.enterprise e using ebis_refresh_keys k where e.enterprise_key = k.key;
    insert into core.enterprise
    with ids as (
        select i.* from core.identifier i join ebis_refresh_keys k on i.enterprise_key = k.key
    ), aic as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, a.source, a.reg_no, a.name, a.legal_rep,
               a.legal_rep_id_no, a.address, a.enterprise_type, a.industry_code, a.division, a.established_on,
               a.source_commit_time, a.applied_at
        from ids i join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        where i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by i.enterprise_key, a.established_on desc nulls last, a.source_key
    ), qts as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, q.source, q.reg_no, q.org_code, q.org_name,
               q.division, q.issued_on, q.source_commit_time, q.applied_at
        from ids i join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        where i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by i.enterprise_key, q.issued_on desc nulls last, q.source_key
    ), nt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.source, t.reg_no, t.taxpayer_id,
               t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on, t.source_commit_time, t.applied_at
        from ids i join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.record_kind = 'tax_registration' and t.bureau = 'ntax' and t.deleted_at is null
        order by i.enterprise_key, t.registered_on desc nulls last, t.source_key
    ), lt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.source, t.reg_no, t.taxpayer_id,
               t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on, t.source_commit_time, t.applied_at
        from ids i join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.record_kind = 'tax_registration' and t.bureau = 'ltax' and t.deleted_at is null
        order by i.enterprise_key, t.registered_on desc nulls last, t.source_key
    ), dereg as (
        select d.reg_no, max(d.deregistered_on) as on_, max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.aic_deregistration d
        where d.deleted_at is null and d.reg_no in (select reg_no from aic)
        group by d.reg_no
    ), rev as (
        select r.reg_no, max(r.revoked_on) as on_, max(core.seen(r.source_commit_time, r.applied_at)) as seen
        from exchange.aic_revocation r
        where r.deleted_at is null and r.reg_no in (select reg_no from aic)
        group by r.reg_no
    ), qv as (
        select v.org_code, max(v.voided_on) as on_, max(core.seen(v.source_commit_time, v.applied_at)) as seen
        from exchange.qts_code_voided v
        where v.deleted_at is null and v.org_code in (select org_code from qts)
        group by v.org_code
    ), td as (
        select d.bureau, d.taxpayer_id, max(d.deregistered_on) as on_,
               max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.tax_deregistration d
        where d.deleted_at is null
          and d.taxpayer_id in (select taxpayer_id from nt union select taxpayer_id from lt)
        group by d.bureau, d.taxpayer_id
    ), ta as (
        select a.bureau, a.taxpayer_id,
               min(coalesce(a.identified_on, date '1900-01-01')) filter (where a.lifted_on is null) as since,
               max(core.seen(a.source_commit_time, a.applied_at)) as seen
        from exchange.tax_abnormal a
        where a.deleted_at is null
          and a.taxpayer_id in (select taxpayer_id from nt union select taxpayer_id from lt)
        group by a.bureau, a.taxpayer_id
    )
    select k.key,
           case when k.key !~ ':' then k.key end,
           coalesce(aic.reg_no, qts.reg_no, nt.reg_no, lt.reg_no),
           coalesce(aic.name, qts.org_name, nt.taxpayer_name, lt.taxpayer_name),
           coalesce(aic.legal_rep, nt.legal_rep, lt.legal_rep),
           aic.legal_rep_id_no,
           coalesce(aic.address, nt.address, lt.address),
           aic.enterprise_type,
           aic.industry_code,
           coalesce(aic.division, qts.division, nt.division, lt.division),
           aic.established_on,
           case when aic.source is null then null
                when rev.reg_no is not null then 'revoked'
                when dereg.reg_no is not null then 'deregistered'
                else 'active' end,
           coalesce(rev.on_, dereg.on_),
           greatest(core.seen(aic.source_commit_time, aic.applied_at), rev.seen, dereg.seen),
           case when qts.source is null then null when qv.org_code is not null then 'voided' else 'issued' end,
           qts.org_name,
           qts.issued_on,
           qv.on_,
           greatest(core.seen(qts.source_commit_time, qts.applied_at), qv.seen),
           nt.taxpayer_id, nt.taxpayer_name, nt.legal_rep, nt.address, nt.registered_on,
           ntd.on_, nta.since,
           case when nt.source is null then null when ntd.taxpayer_id is not null then 'deregistered'
                when nta.since is not null then 'abnormal' else 'active' end,
           greatest(core.seen(nt.source_commit_time, nt.applied_at), ntd.seen, nta.seen),
           lt.taxpayer_id, lt.taxpayer_name, lt.legal_rep, lt.address, lt.registered_on,
           ltd.on_, lta.since,
           case when lt.source is null then null when ltd.taxpayer_id is not null then 'deregistered'
                when lta.since is not null then 'abnormal' else 'active' end,
           greatest(core.seen(lt.source_commit_time, lt.applied_at), ltd.seen, lta.seen),
           core.norm_text(coalesce(aic.name, qts.org_name, nt.taxpayer_name, lt.taxpayer_name)),
           core.norm_text(coalesce(aic.legal_rep, nt.legal_rep, lt.legal_rep)),
           core.norm_text(coalesce(aic.address, nt.address, lt.address)),
           core.norm_text(qts.org_name),
           core.norm_text(nt.taxpayer_name), core.norm_text(nt.legal_rep), core.norm_text(nt.address),
           core.norm_text(lt.taxpayer_name), core.norm_text(lt.legal_rep), core.norm_text(lt.address),
           now()
    from ebis_refresh_keys k
    left join aic on aic.key = k.key
    left join dereg on dereg.reg_no = aic.reg_no
    left join rev on rev.reg_no = aic.reg_no
    left join qts on qts.key = k.key
    left join qv on qv.org_code = qts.org_code
    left join nt on nt.key = k.key
    left join td ntd on ntd.bureau = 'ntax' and ntd.taxpayer_id = nt.taxpayer_id
    left join ta nta on nta.bureau = 'ntax' and nta.taxpayer_id = nt.taxpayer_id
    left join lt on lt.key = k.key
    left join td ltd on ltd.bureau = 'ltax' and ltd.taxpayer_id = lt.taxpayer_id
    left join ta lta on lta.bureau = 'ltax' and lta.taxpayer_id = lt.taxpayer_id
    where aic.source is not null or qts.source is not null or nt.source is not null or lt.source is not null;
    drop table ebis_refresh_keys;
end $$;


create or replace function core.resolve_bulk(p_reg text[], p_org text[], p_tax text[]) returns void
language plpgsql set jit = off set work_mem = '64MB' set enable_seqscan = on as $$
declare
    old_keys text[];
    new_keys text[];
begin
    -- The identifiers, expanded as core.resolve_by_key expands them: registration
    -- numbers linked to the codes and taxpayer ids, then codes linked to those, then
    -- taxpayer ids whose credit code embeds one of the codes.
    create temp table ebis_o0 on commit drop as
        select x as v from unnest(p_org) x where x is not null
        union select core.uscc_org_code(x) from unnest(p_reg) x where core.uscc_org_code(x) is not null
        union select core.uscc_org_code(x) from unnest(p_tax) x where core.uscc_org_code(x) is not null;
    create temp table ebis_t on commit drop as
        select distinct x as v from unnest(p_tax) x where x is not null;
    analyze ebis_o0, ebis_t;
    create temp table ebis_r on commit drop as
        select x as v from unnest(p_reg) x where x is not null
        union select i.reg_no from core.identifier i join ebis_o0 o on i.org_code = o.v where i.reg_no is not null
        union select i.reg_no from core.identifier i join ebis_t t on i.taxpayer_id = t.v where i.reg_no is not null
        union select q.reg_no from exchange.qts_code_issuance q join ebis_o0 o on q.org_code = o.v where q.reg_no is not null
        union select x.reg_no from exchange.tax_registration x join ebis_o0 o on x.org_code = o.v where x.reg_no is not null
        union select x.reg_no from exchange.tax_registration x join ebis_t t on x.taxpayer_id = t.v where x.reg_no is not null
        union select a.reg_no from exchange.aic_establishment a join ebis_o0 o on core.uscc_org_code(a.reg_no) = o.v;
    analyze ebis_r;
    create temp table ebis_o on commit drop as
        select v from ebis_o0
        union select i.org_code from core.identifier i join ebis_r r on i.reg_no = r.v where i.org_code is not null
        union select i.org_code from core.identifier i join ebis_t t on i.taxpayer_id = t.v where i.org_code is not null
        union select q.org_code from exchange.qts_code_issuance q join ebis_r r on q.reg_no = r.v where q.org_code is not null
        union select x.org_code from exchange.tax_registration x join ebis_r r on x.reg_no = r.v where x.org_code is not null
        union select core.uscc_org_code(v) from ebis_r where core.uscc_org_code(v) is not null;
    analyze ebis_o;
    insert into ebis_t
        select x.taxpayer_id from exchange.tax_registration x join ebis_o o on core.uscc_org_code(x.taxpayer_id) = o.v
        union select x.taxpayer_id from exchange.tax_registration x join ebis_o o on core.uscc_org_code(x.reg_no) = o.v
        where x.taxpayer_id is not null
        except select v from ebis_t;
    analyze ebis_t;

    with gone as (
        delete from core.identifier i
        where i.reg_no in (select v from ebis_r) or i.org_code in (select v from ebis_o)
           or i.taxpayer_id in (select v from ebis_t)
        returning i.enterprise_key)
    select array_agg(distinct enterprise_key) into old_keys from gone;

    -- The records to resolve, and for their registration numbers the code QTS issued
    -- (one in force and the latest first) and the code tax holds (one QTS issued and in
    -- force first): the lateral lookups of resolve_by_key as `distinct on`, hashed.
    create temp table ebis_aic on commit drop as
        select a.source, a.source_key, a.bureau, a.division, a.reg_no
        from exchange.aic_establishment a join ebis_r r on a.reg_no = r.v
        where a.deleted_at is null;
    create temp table ebis_qts on commit drop as
        select q.source, q.source_key, q.bureau, q.division, q.reg_no, q.org_code
        from exchange.qts_code_issuance q
        where q.deleted_at is null and (q.reg_no in (select v from ebis_r) or q.org_code in (select v from ebis_o));
    create temp table ebis_tax on commit drop as
        select x.source, x.source_key, x.bureau, x.division, x.reg_no, x.org_code, x.taxpayer_id
        from exchange.tax_registration x
        where x.deleted_at is null
          and (x.reg_no in (select v from ebis_r) or x.org_code in (select v from ebis_o)
               or x.taxpayer_id in (select v from ebis_t));
    create temp table ebis_regs on commit drop as
        select reg_no from ebis_aic union select reg_no from ebis_tax where reg_no is not null;
    analyze ebis_aic, ebis_qts, ebis_tax, ebis_regs;
    create temp table ebis_issued on commit drop as
        select distinct on (q.reg_no) q.reg_no, q.org_code
        from exchange.qts_code_issuance q
        join ebis_regs g on g.reg_no = q.reg_no
        left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
               on vo.org_code = q.org_code
        where q.deleted_at is null and core.is_org_code(q.org_code)
        order by q.reg_no, vo.org_code is not null, q.issued_on desc nulls last, q.org_code;
    create temp table ebis_held on commit drop as
        select distinct on (x.reg_no) x.reg_no, x.org_code
        from exchange.tax_registration x
        join ebis_regs g on g.reg_no = x.reg_no
        left join (select distinct q.org_code from exchange.qts_code_issuance q where q.deleted_at is null) qi
               on qi.org_code = x.org_code
        left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
               on vo.org_code = x.org_code
        where x.deleted_at is null and core.is_org_code(x.org_code)
        order by x.reg_no, qi.org_code is null, vo.org_code is not null, x.org_code;
    analyze ebis_issued, ebis_held;

    insert into core.identifier
    select 'aic_establishment', a.source, a.source_key, a.bureau, a.division, a.reg_no, null, null,
           core.is_reg_no(a.reg_no), null, null,
           coalesce(ic.org_code, tc.org_code, core.uscc_org_code(a.reg_no),
                    'R:' || coalesce(a.reg_no, a.source || '/' || a.source_key))
    from ebis_aic a
    left join ebis_issued ic on ic.reg_no = a.reg_no
    left join ebis_held tc on tc.reg_no = a.reg_no
    on conflict do nothing;

    insert into core.identifier
    select 'qts_code_issuance', q.source, q.source_key, q.bureau, q.division, q.reg_no, q.org_code, null,
           core.is_reg_no(q.reg_no), core.is_org_code(q.org_code), null,
           case when core.is_org_code(q.org_code) then q.org_code else 'Q:' || q.source || '/' || q.source_key end
    from ebis_qts q
    on conflict do nothing;

    insert into core.identifier
    select 'tax_registration', x.source, x.source_key, x.bureau, x.division, x.reg_no, x.org_code, x.taxpayer_id,
           core.is_reg_no(x.reg_no), core.is_org_code(x.org_code), core.is_taxpayer_id(x.taxpayer_id),
           case
               when core.is_org_code(x.org_code) and qi.org_code is not null and vo.org_code is null
                   then x.org_code
               when x.reg_no is not null and ae.reg_no is not null
                   then coalesce(ic.org_code, tc.org_code, core.uscc_org_code(x.reg_no), 'R:' || x.reg_no)
               when core.is_org_code(x.org_code) then x.org_code
               when core.uscc_org_code(x.taxpayer_id) is not null then core.uscc_org_code(x.taxpayer_id)
               when core.uscc_org_code(x.reg_no) is not null then core.uscc_org_code(x.reg_no)
               else 'T:' || x.bureau || '/' || coalesce(x.taxpayer_id, x.source_key)
           end
    from ebis_tax x
    left join (select distinct q.org_code from exchange.qts_code_issuance q where q.deleted_at is null) qi
           on qi.org_code = x.org_code
    left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
           on vo.org_code = x.org_code
    left join (select distinct a.reg_no from exchange.aic_establishment a where a.deleted_at is null) ae
           on ae.reg_no = x.reg_no
    left join ebis_issued ic on ic.reg_no = x.reg_no
    left join ebis_held tc on tc.reg_no = x.reg_no
    on conflict do nothing;

    select array_agg(distinct i.enterprise_key) into new_keys
    from core.identifier i
    where i.reg_no in (select v from ebis_r) or i.org_code in (select v from ebis_o)
       or i.taxpayer_id in (select v from ebis_t);
    drop table ebis_o0, ebis_r, ebis_o, ebis_t, ebis_aic, ebis_qts, ebis_tax, ebis_regs, ebis_issued, ebis_held;
    perform core.refresh_enterprises(coalesce(old_keys, '{}') || coalesce(new_keys, '{}'));
end $$;

-- Rebuilds the base from the exchange tables: emptied, secondary indexes dropped and
-- built again after the set-wise resolve. The caller holds the base's advisory lock and
-- takes the queue. Runs as the migrations' owner: TRUNCATE, DROP and CREATE INDEX need
-- the tables' owner, and the drainer (the pipeline's account) calls it.
create function core.rebuild_all() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp set enable_seqscan = on set jit = off
    set work_mem = '64MB' set maintenance_work_mem = '256MB' as $$
declare
    base constant regclass[] := array['core.identifier'::regclass, 'core.enterprise'::regclass];
    drops text[];
    again text[];
    d text;
begin
    -- Keys and indexes: dropped now, built again afterwards (in one sort each, not row
    -- by row).
    with parts(drop_sql, create_sql) as (
        select format('alter table %s drop constraint %I', c.conrelid::regclass, c.conname),
               format('alter table %s add constraint %I %s', c.conrelid::regclass, c.conname,
                      pg_get_constraintdef(c.oid))
          from pg_constraint c
         where c.conrelid = any(base) and c.contype in ('p', 'u')
        union all
        select format('drop index %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
          from pg_index i
         where i.indrelid = any(base)
           and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid))
    select coalesce(array_agg(drop_sql), '{}'), coalesce(array_agg(create_sql), '{}')
      into drops, again
      from parts;
    truncate core.identifier, core.enterprise;
    foreach d in array drops loop
        execute d;
    end loop;
    -- Every enterprise changes: the next comparison runs full (a marker, instead of every
    -- key logged in compare.changed, which took 4.6 s of a 1M rebuild).
    perform set_config('ebis.rebuilding', 'on', true);
    perform core.resolve_bulk(
        array(select reg_no from exchange.aic_establishment where deleted_at is null
              union select reg_no from exchange.qts_code_issuance where deleted_at is null
              union select reg_no from exchange.tax_registration where deleted_at is null),
        array(select org_code from exchange.qts_code_issuance where deleted_at is null
              union select org_code from exchange.tax_registration where deleted_at is null),
        array(select taxpayer_id from exchange.tax_registration where deleted_at is null));
    perform set_config('ebis.rebuilding', 'off', true);
    insert into compare.changed values ('*') on conflict do nothing;
    foreach d in array again loop
        execute d;
    end loop;
    analyze core.identifier;
    analyze core.enterprise;
end $$;
revoke execute on function core.rebuild_all() from public;
grant execute on function core.rebuild_all() to ebis_pipeline;
comment on function core.rebuild_all() is '由交换表重建企业基础信息库（先删二级索引，集合运算后重建索引）';

-- Records the base complete up to `sources` (source → complete_up_to, read in the same
-- statement as the queue just taken in whole).
create function core.mark_base_complete(sources jsonb) returns void
language sql as $$
    insert into core.base_complete (source, complete_up_to, drained_at)
    select s.key, (s.value #>> '{}')::timestamptz, now()
    from jsonb_each(sources) s
    on conflict (source) do update
       set complete_up_to = excluded.complete_up_to, drained_at = excluded.drained_at
$$;

-- Rebuilds the base, then removes the queued statements `ids` (taken in the same
-- statement as `sources`, every source's complete_up_to) and records the base complete
-- up to those: every statement applied before them was visible to the rebuild.
create function core.rebuild_taking(ids bigint[], sources jsonb) returns void
language plpgsql as $$
begin
    perform core.rebuild_all();
    delete from core.pending where seq = any(ids);
    perform core.mark_base_complete(sources);
end $$;

-- The queue is worth a rebuild when it names more identifiers than a quarter of the
-- base's (and at least 20,000): measured, a rebuild costs about what resolving a fifth
-- of the base statement by statement does.
create function core.rebuild_pays(queued bigint) returns boolean
language sql stable as $$
    select queued > greatest(20000, 0.25 * (select greatest(c.reltuples, 0)
                                             from pg_class c where c.oid = 'core.identifier'::regclass))
$$;

-- core.drain gains `rebuild_allowed`: the drainer turns it off for a while after a drain
-- failed, and to take a single statement (a rebuild reads every record, so a record the
-- base refuses would fail every rebuild; one statement at a time parks it).
drop function core.drain(integer);
create function core.drain(max_statements integer default 500, rebuild_allowed boolean default true)
returns bigint
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    ids bigint[];
    sources jsonb;
    queued bigint;
    r text[];
    o text[];
    t text[];
    tr text[];
    tor text[];
    tt text[];
    refs core.row_ref[];
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        return -1;
    end if;
    -- One snapshot for the queue and the sources' completeness: everything applied before
    -- it is queued in it.
    select (select array_agg(seq order by seq) from core.pending),
           (select coalesce(jsonb_object_agg(source, complete_up_to), '{}') from ebis.source_status),
           (select coalesce(sum(cardinality(resolve_reg) + cardinality(resolve_org) + cardinality(resolve_tax)), 0)
              from core.pending)
      into ids, sources, queued;
    if ids is not null and rebuild_allowed and core.rebuild_pays(queued) then
        perform core.rebuild_taking(ids, sources);
        return cardinality(ids);
    end if;
    ids := ids[1:max_statements];
    if ids is not null then
        r := core.pending_values(ids, 'resolve_reg');
        o := core.pending_values(ids, 'resolve_org');
        t := core.pending_values(ids, 'resolve_tax');
        tr := core.pending_values(ids, 'touch_reg');
        tor := core.pending_values(ids, 'touch_org');
        tt := core.pending_values(ids, 'touch_tax');
        select coalesce(array_agg(distinct x), '{}') into refs
          from core.pending p, unnest(p.touch_rows) x where p.seq = any(ids);
        if cardinality(r) + cardinality(o) + cardinality(t) > 0 then
            perform core.resolve(r, o, t);
        end if;
        if cardinality(tr) + cardinality(tor) + cardinality(tt) + cardinality(refs) > 0 then
            perform core.refresh_enterprises(array(
                select distinct i.enterprise_key from core.identifier i
                where (i.record_kind = 'aic_establishment' and i.reg_no = any(tr))
                   or (i.record_kind = 'qts_code_issuance' and i.org_code = any(tor))
                   or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(tt))
                union
                select i.enterprise_key from core.identifier i
                join unnest(refs) x on i.record_kind = x.record_kind collate "default"
                     and i.source = x.source collate "default"
                     and i.source_key = x.source_key collate "default"));
        end if;
        delete from core.pending where seq = any(ids);
    end if;
    if coalesce(cardinality(ids), 0) < max_statements then
        perform core.mark_base_complete(sources);
    end if;
    return coalesce(cardinality(ids), 0);
end $$;
comment on function core.drain(integer, boolean) is '处理企业基础信息库待处理队列中的一批语句（后台运行；队列很大时整体重建）';
grant execute on function core.drain(integer, boolean) to ebis_pipeline;

-- Rebuilds the whole base (repairs); the queued statements it saw are taken with it.
create or replace function core.rebuild() returns bigint
language plpgsql as $$
declare
    ids bigint[];
    sources jsonb;
begin
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    select (select coalesce(array_agg(seq), '{}') from core.pending),
           (select coalesce(jsonb_object_agg(source, complete_up_to), '{}') from ebis.source_status)
      into ids, sources;
    perform core.rebuild_taking(ids, sources);
    return (select count(*) from core.enterprise);
end $$;

-- The identifier checks a resolve calls for every record, with the same results in fewer
-- steps (a fifth of a 200,000-record rebuild went to them): the ISO 7064 MOD 11,10 loop of
-- a 15-digit registration number as one expression (each step p := 2·s mod 11 with
-- s = (p + digit) mod 10, 0 read as 10, written s = (p + digit + 9) mod 10 + 1), and no
-- call of core.is_uscc for what cannot be a credit code.
create or replace function core.is_reg_no(n text) returns boolean
language plpgsql immutable strict parallel safe as $$
begin
    return case
        when length(n) = 18 then core.is_uscc(n)
        when n ~ '^[0-9]{13}$' then true
        when n !~ '^[0-9]{15}$' then false
        else ascii(substr(n, 15, 1)) - 48 = (11 - (2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * ((((2 * (((10 + ascii(substr(n, 1, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 2, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 3, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 4, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 5, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 6, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 7, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 8, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 9, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 10, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 11, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 12, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 13, 1)) - 39) % 10) + 1)) % 11 + ascii(substr(n, 14, 1)) - 39) % 10) + 1)) % 11) % 10
    end;
end $$;

create or replace function core.uscc_org_code(c text) returns text
language plpgsql immutable strict parallel safe as $$
begin
    return case when length(c) = 18 and core.is_uscc(c) then substr(c, 9, 9) end;
end $$;

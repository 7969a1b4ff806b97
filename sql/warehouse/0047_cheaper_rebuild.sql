-- A cheaper rebuild of the enterprise base, measured on the comparison bench's city of
-- 1,000,000 enterprises (four bureaus, 7.6M exchange rows; `ebis bench compare
-- --enterprises 1000000 --keep`, then `select core.rebuild()` timed with auto_explain):
--
-- - core.is_taxpayer_id was an SQL function declared STRICT over a CASE, which
--   PostgreSQL cannot inline (a strict SQL function is inlined only when its body is
--   strict too), so every call went through the SQL-function executor: 6.1 µs a call,
--   8.0 s for the city's 1.3M tax registrations, once in every rebuild and in every
--   refresh and comparison of tax records. As PL/pgSQL with the same CASE it is 2.8 µs
--   (3.7 s); the results cannot change (the same expression, and a strict function
--   still gives NULL for NULL), and tests/compare.rs compares it with
--   src/identifiers.rs on generated codes.
-- - core.resolve_all: the tax branch's first rule checks the org code's format after
--   the cheap tests that it was issued and not voided, not before (AND is commutative,
--   NULL included): core.is_org_code (1.3 µs) runs on fewer rows.
-- - core.build_enterprises: the base's rows come from full joins of the bureaus' picks
--   on the enterprise key, instead of a union of every pick's key (a hash aggregate of
--   3.3M keys in the city) joined to each pick in turn.

create or replace function core.is_taxpayer_id(t text) returns boolean
language plpgsql immutable strict parallel safe as $$
begin
    return case
        when length(t) = 18 and core.is_uscc(t) then true
        when length(t) = 15 and t ~ '^[0-9]{6}' and core.is_org_code(substr(t, 7)) then true
        when length(t) in (15, 18) then core.is_id_card(t)
        when length(t) in (17, 20) then substr(t, length(t) - 1) ~ '^[0-9]{2}$'
                                     and core.is_id_card(substr(t, 1, length(t) - 2))
        else false
    end;
end $$;

create or replace function core.resolve_all() returns void
language plpgsql set jit = off set work_mem = '64MB' set enable_seqscan = on
    set parallel_tuple_cost = 0.01 as $$
begin
    -- The lookups are empty here: every rebuild empties them before it commits, and one
    -- that fails rolls back.
    insert into core.rebuild_issued
        select distinct on (q.reg_no collate "C") q.reg_no, q.org_code
        from exchange.qts_code_issuance q
        left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
               on vo.org_code = q.org_code
        where q.deleted_at is null and q.reg_no is not null and core.is_org_code(q.org_code)
        order by q.reg_no collate "C", vo.org_code is not null, q.issued_on desc nulls last, q.org_code;
    insert into core.rebuild_held
        select distinct on (x.reg_no collate "C") x.reg_no, x.org_code
        from exchange.tax_registration x
        left join (select distinct q.org_code from exchange.qts_code_issuance q where q.deleted_at is null) qi
               on qi.org_code = x.org_code
        left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
               on vo.org_code = x.org_code
        where x.deleted_at is null and x.reg_no is not null and core.is_org_code(x.org_code)
        order by x.reg_no collate "C", qi.org_code is null, vo.org_code is not null, x.org_code;
    analyze core.rebuild_issued, core.rebuild_held;

    create temp table ebis_resolved on commit drop as
    select 'aic_establishment'::text as record_kind, a.source, a.source_key, a.bureau, a.division, a.reg_no,
           null::text as org_code, null::text as taxpayer_id,
           core.is_reg_no(a.reg_no) as reg_no_valid, null::boolean as org_code_valid,
           null::boolean as taxpayer_id_valid,
           coalesce(ic.org_code, tc.org_code, core.uscc_org_code(a.reg_no), 'R:' || a.reg_no) as enterprise_key
    from exchange.aic_establishment a
    left join core.rebuild_issued ic on ic.reg_no = a.reg_no
    left join core.rebuild_held tc on tc.reg_no = a.reg_no
    where a.deleted_at is null and a.reg_no is not null
    union all
    select 'qts_code_issuance', q.source, q.source_key, q.bureau, q.division, q.reg_no, q.org_code, null,
           core.is_reg_no(q.reg_no), core.is_org_code(q.org_code), null,
           case when core.is_org_code(q.org_code) then q.org_code else 'Q:' || q.source || '/' || q.source_key end
    from exchange.qts_code_issuance q
    where q.deleted_at is null and (q.reg_no is not null or q.org_code is not null)
    union all
    select 'tax_registration', x.source, x.source_key, x.bureau, x.division, x.reg_no, x.org_code, x.taxpayer_id,
           core.is_reg_no(x.reg_no), core.is_org_code(x.org_code), core.is_taxpayer_id(x.taxpayer_id),
           case
               when qi.org_code is not null and vo.org_code is null and core.is_org_code(x.org_code)
                   then x.org_code
               when x.reg_no is not null and ae.reg_no is not null
                   then coalesce(ic.org_code, tc.org_code, core.uscc_org_code(x.reg_no), 'R:' || x.reg_no)
               when core.is_org_code(x.org_code) then x.org_code
               when core.uscc_org_code(x.taxpayer_id) is not null then core.uscc_org_code(x.taxpayer_id)
               when core.uscc_org_code(x.reg_no) is not null then core.uscc_org_code(x.reg_no)
               else 'T:' || x.bureau || '/' || coalesce(x.taxpayer_id, x.source_key)
           end
    from exchange.tax_registration x
    left join (select distinct q.org_code from exchange.qts_code_issuance q where q.deleted_at is null) qi
           on qi.org_code = x.org_code
    left join (select distinct v.org_code from exchange.qts_code_voided v where v.deleted_at is null) vo
           on vo.org_code = x.org_code
    left join (select distinct a.reg_no from exchange.aic_establishment a where a.deleted_at is null) ae
           on ae.reg_no = x.reg_no
    left join core.rebuild_issued ic on ic.reg_no = x.reg_no
    left join core.rebuild_held tc on tc.reg_no = x.reg_no
    where x.deleted_at is null and (x.reg_no is not null or x.org_code is not null or x.taxpayer_id is not null);
    insert into core.identifier select * from ebis_resolved;
    drop table ebis_resolved;
    truncate core.rebuild_issued, core.rebuild_held;
    perform core.build_enterprises();
end $$;

create or replace function core.build_enterprises() returns void
language plpgsql set jit = off set enable_seqscan = on set work_mem = '256MB'
    set parallel_tuple_cost = 0.01 as $$
begin
    if not core.rebuilding() then
        raise exception 'core.build_enterprises runs only inside a rebuild (core.rebuild)';
    end if;
    -- The planner needs the just-filled table's size to spread the scans over workers.
    analyze core.identifier;
    create temp table ebis_b_aic on commit drop as
        select distinct on (i.enterprise_key collate "C") i.enterprise_key as key, a.source, a.reg_no, a.name, a.legal_rep,
               a.legal_rep_id_no, a.address, a.enterprise_type, a.industry_code, a.division, a.established_on,
               core.seen(a.source_commit_time, a.applied_at) as seen, core.norm_text(a.name) as name_norm,
               core.norm_text(a.legal_rep) as legal_rep_norm, core.norm_text(a.address) as address_norm
        from core.identifier i join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        where i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by i.enterprise_key collate "C", a.established_on desc nulls last, a.source_key;
    create temp table ebis_b_qts on commit drop as
        select distinct on (i.enterprise_key collate "C") i.enterprise_key as key, q.source, q.reg_no, q.org_code, q.org_name,
               q.division, q.issued_on, core.seen(q.source_commit_time, q.applied_at) as seen,
               core.norm_text(q.org_name) as name_norm
        from core.identifier i join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        where i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by i.enterprise_key collate "C", q.issued_on desc nulls last, q.source_key;
    create temp table ebis_b_tax on commit drop as
        select distinct on (t.bureau collate "C", i.enterprise_key collate "C") t.bureau, i.enterprise_key as key, t.source, t.reg_no,
               t.taxpayer_id, t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on,
               core.seen(t.source_commit_time, t.applied_at) as seen, core.norm_text(t.taxpayer_name) as name_norm,
               core.norm_text(t.legal_rep) as legal_rep_norm, core.norm_text(t.address) as address_norm
        from core.identifier i join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.record_kind = 'tax_registration' and t.bureau in ('ntax', 'ltax') and t.deleted_at is null
        order by t.bureau collate "C", i.enterprise_key collate "C", t.registered_on desc nulls last, t.source_key;
    analyze ebis_b_aic, ebis_b_qts, ebis_b_tax;
    insert into core.enterprise
    with nt as (select * from ebis_b_tax where bureau = 'ntax'),
    lt as (select * from ebis_b_tax where bureau = 'ltax'),
    dereg as (
        select d.reg_no, max(d.deregistered_on) as on_, max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.aic_deregistration d
        where d.deleted_at is null
        group by d.reg_no
    ), rev as (
        select r.reg_no, max(r.revoked_on) as on_, max(core.seen(r.source_commit_time, r.applied_at)) as seen
        from exchange.aic_revocation r
        where r.deleted_at is null
        group by r.reg_no
    ), qv as (
        select v.org_code, max(v.voided_on) as on_, max(core.seen(v.source_commit_time, v.applied_at)) as seen
        from exchange.qts_code_voided v
        where v.deleted_at is null
        group by v.org_code
    ), td as (
        select d.bureau, d.taxpayer_id, max(d.deregistered_on) as on_,
               max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.tax_deregistration d
        where d.deleted_at is null
        group by d.bureau, d.taxpayer_id
    ), ta as (
        select a.bureau, a.taxpayer_id,
               min(coalesce(a.identified_on, date '1900-01-01')) filter (where a.lifted_on is null) as since,
               max(core.seen(a.source_commit_time, a.applied_at)) as seen
        from exchange.tax_abnormal a
        where a.deleted_at is null
        group by a.bureau, a.taxpayer_id
    )
    select coalesce(aic.key, qts.key, nt.key, lt.key),
           case when coalesce(aic.key, qts.key, nt.key, lt.key) !~ ':'
                then coalesce(aic.key, qts.key, nt.key, lt.key) end,
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
           greatest(aic.seen, rev.seen, dereg.seen),
           case when qts.source is null then null when qv.org_code is not null then 'voided' else 'issued' end,
           qts.org_name,
           qts.issued_on,
           qv.on_,
           greatest(qts.seen, qv.seen),
           nt.taxpayer_id, nt.taxpayer_name, nt.legal_rep, nt.address, nt.registered_on,
           ntd.on_, nta.since,
           case when nt.source is null then null when ntd.taxpayer_id is not null then 'deregistered'
                when nta.since is not null then 'abnormal' else 'active' end,
           greatest(nt.seen, ntd.seen, nta.seen),
           lt.taxpayer_id, lt.taxpayer_name, lt.legal_rep, lt.address, lt.registered_on,
           ltd.on_, lta.since,
           case when lt.source is null then null when ltd.taxpayer_id is not null then 'deregistered'
                when lta.since is not null then 'abnormal' else 'active' end,
           greatest(lt.seen, ltd.seen, lta.seen),
           coalesce(aic.name_norm, qts.name_norm, nt.name_norm, lt.name_norm),
           coalesce(aic.legal_rep_norm, nt.legal_rep_norm, lt.legal_rep_norm),
           coalesce(aic.address_norm, nt.address_norm, lt.address_norm),
           qts.name_norm,
           nt.name_norm, nt.legal_rep_norm, nt.address_norm,
           lt.name_norm, lt.legal_rep_norm, lt.address_norm,
           now()
    from ebis_b_aic aic
    full join ebis_b_qts qts on qts.key = aic.key
    full join nt on nt.key = coalesce(aic.key, qts.key)
    full join lt on lt.key = coalesce(aic.key, qts.key, nt.key)
    left join dereg on dereg.reg_no = aic.reg_no
    left join rev on rev.reg_no = aic.reg_no
    left join qv on qv.org_code = qts.org_code
    left join td ntd on ntd.bureau = 'ntax' and ntd.taxpayer_id = nt.taxpayer_id
    left join ta nta on nta.bureau = 'ntax' and nta.taxpayer_id = nt.taxpayer_id
    left join td ltd on ltd.bureau = 'ltax' and ltd.taxpayer_id = lt.taxpayer_id
    left join ta lta on lta.bureau = 'ltax' and lta.taxpayer_id = lt.taxpayer_id;
    drop table ebis_b_aic, ebis_b_qts, ebis_b_tax;
end $$;

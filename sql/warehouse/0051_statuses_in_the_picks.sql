-- The enterprise base's rebuild joins each bureau's status into that bureau's pick, where
-- PostgreSQL's parallel workers do it, and names its last resolving step apart.
--
-- core.build_enterprises (0047) picked each bureau's record per enterprise in parallel
-- (`create temp table … as select`), then joined the picks and the seven status tables
-- (AIC deregistrations and revocations, QTS voided codes, the tax bureaus'
-- deregistrations and abnormal listings) in its one `insert`, which PostgreSQL 15 runs
-- in one backend: each join passed every enterprise's wide row on, even where the status
-- table was empty (0.2 s per join at 1M enterprises). Now each pick carries its bureau's
-- status (its closing or voiding date, and the latest `seen` of the record and its status
-- records), joined before the pick's sort, by the parallel workers: every exchange row
-- meets at most one row of each status table (grouped by its key), so the rows and the
-- pick stay the same. The `insert` keeps only the three full joins of the picks.
--
-- Measured with `select core.rebuild()` (the same data, the old and new function
-- alternated): after a first load of 1M AIC records 16.8 / 17.2 s → 16.3 / 15.7 s; on
-- the comparison bench's city of 1M enterprises (7.6M exchange rows) 84.0 → 81.1 s
-- (the `insert` 14.6 → 9.8 s, the picks 12.2 → 14.7 s). The city's base was the same
-- row for row (an md5 over every column of core.enterprise, before and after).
--
-- `core.rebuild_step('enterprises')` now marks where records are resolved and the
-- enterprises built from them begin (0050's `resolve` covered both; it is about half of a
-- rebuild).

create or replace function core.build_enterprises() returns void
language plpgsql set jit = off set enable_seqscan = on set work_mem = '256MB'
    set parallel_tuple_cost = 0.01 as $$
begin
    if not core.rebuilding() then
        raise exception 'core.build_enterprises runs only inside a rebuild (core.rebuild)';
    end if;
    perform core.rebuild_step('enterprises');
    -- The planner needs the just-filled table's size to spread the scans over workers.
    analyze core.identifier;
    -- Each bureau's pick carries its status, joined below the pick's sort, where the
    -- parallel workers do it: every exchange row gets at most one row of each (grouped)
    -- status table, so the rows and the pick stay the same.
    create temp table ebis_b_aic on commit drop as
        select distinct on (i.enterprise_key collate "C") i.enterprise_key as key, a.reg_no, a.name, a.legal_rep,
               a.legal_rep_id_no, a.address, a.enterprise_type, a.industry_code, a.division, a.established_on,
               case when rev.reg_no is not null then 'revoked'
                    when dereg.reg_no is not null then 'deregistered'
                    else 'active' end as status,
               coalesce(rev.on_, dereg.on_) as closed_on,
               greatest(core.seen(a.source_commit_time, a.applied_at), rev.seen, dereg.seen) as seen,
               core.norm_text(a.name) as name_norm,
               core.norm_text(a.legal_rep) as legal_rep_norm, core.norm_text(a.address) as address_norm
        from core.identifier i
        join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        left join (select d.reg_no, max(d.deregistered_on) as on_,
                          max(core.seen(d.source_commit_time, d.applied_at)) as seen
                   from exchange.aic_deregistration d
                   where d.deleted_at is null
                   group by d.reg_no) dereg on dereg.reg_no = a.reg_no
        left join (select r.reg_no, max(r.revoked_on) as on_,
                          max(core.seen(r.source_commit_time, r.applied_at)) as seen
                   from exchange.aic_revocation r
                   where r.deleted_at is null
                   group by r.reg_no) rev on rev.reg_no = a.reg_no
        where i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by i.enterprise_key collate "C", a.established_on desc nulls last, a.source_key;
    create temp table ebis_b_qts on commit drop as
        select distinct on (i.enterprise_key collate "C") i.enterprise_key as key, q.reg_no, q.org_name,
               q.division, q.issued_on,
               case when qv.org_code is not null then 'voided' else 'issued' end as status,
               qv.on_ as voided_on,
               greatest(core.seen(q.source_commit_time, q.applied_at), qv.seen) as seen,
               core.norm_text(q.org_name) as name_norm
        from core.identifier i
        join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        left join (select v.org_code, max(v.voided_on) as on_,
                          max(core.seen(v.source_commit_time, v.applied_at)) as seen
                   from exchange.qts_code_voided v
                   where v.deleted_at is null
                   group by v.org_code) qv on qv.org_code = q.org_code
        where i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by i.enterprise_key collate "C", q.issued_on desc nulls last, q.source_key;
    create temp table ebis_b_tax on commit drop as
        select distinct on (t.bureau collate "C", i.enterprise_key collate "C") t.bureau, i.enterprise_key as key,
               t.reg_no, t.taxpayer_id, t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on,
               td.on_ as deregistered_on, ta.since as abnormal_since,
               case when td.taxpayer_id is not null then 'deregistered'
                    when ta.since is not null then 'abnormal'
                    else 'active' end as status,
               greatest(core.seen(t.source_commit_time, t.applied_at), td.seen, ta.seen) as seen,
               core.norm_text(t.taxpayer_name) as name_norm,
               core.norm_text(t.legal_rep) as legal_rep_norm, core.norm_text(t.address) as address_norm
        from core.identifier i
        join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        left join (select d.bureau, d.taxpayer_id, max(d.deregistered_on) as on_,
                          max(core.seen(d.source_commit_time, d.applied_at)) as seen
                   from exchange.tax_deregistration d
                   where d.deleted_at is null
                   group by d.bureau, d.taxpayer_id) td on td.bureau = t.bureau and td.taxpayer_id = t.taxpayer_id
        left join (select a.bureau, a.taxpayer_id,
                          min(coalesce(a.identified_on, date '1900-01-01')) filter (where a.lifted_on is null) as since,
                          max(core.seen(a.source_commit_time, a.applied_at)) as seen
                   from exchange.tax_abnormal a
                   where a.deleted_at is null
                   group by a.bureau, a.taxpayer_id) ta on ta.bureau = t.bureau and ta.taxpayer_id = t.taxpayer_id
        where i.record_kind = 'tax_registration' and t.bureau in ('ntax', 'ltax') and t.deleted_at is null
        order by t.bureau collate "C", i.enterprise_key collate "C", t.registered_on desc nulls last, t.source_key;
    analyze ebis_b_aic, ebis_b_qts, ebis_b_tax;
    insert into core.enterprise
    with nt as (select * from ebis_b_tax where bureau = 'ntax'),
    lt as (select * from ebis_b_tax where bureau = 'ltax')
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
           aic.status, aic.closed_on, aic.seen,
           qts.status, qts.org_name, qts.issued_on, qts.voided_on, qts.seen,
           nt.taxpayer_id, nt.taxpayer_name, nt.legal_rep, nt.address, nt.registered_on,
           nt.deregistered_on, nt.abnormal_since, nt.status, nt.seen,
           lt.taxpayer_id, lt.taxpayer_name, lt.legal_rep, lt.address, lt.registered_on,
           lt.deregistered_on, lt.abnormal_since, lt.status, lt.seen,
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
    full join lt on lt.key = coalesce(aic.key, qts.key, nt.key);
    drop table ebis_b_aic, ebis_b_qts, ebis_b_tax;
end $$;

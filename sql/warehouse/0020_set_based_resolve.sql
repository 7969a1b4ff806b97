-- Resolving identifiers set-wise. core.resolve computed each record's enterprise through
-- nested SQL functions (core.enterprise_code → core.issued_code → core.is_voided), one
-- executor start per call and several per record: most of a large drain's time. The
-- same choices are now lateral lookups in the insert itself (a code QTS issued, one in
-- force and the latest first; else the code tax holds, one QTS issued and in force first;
-- else the one a credit code embeds), planned once per statement.

create or replace function core.resolve(p_reg text[], p_org text[], p_tax text[]) returns void
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    r text[] := array(select distinct x from unnest(p_reg) x where x is not null);
    o text[] := array(select distinct x from unnest(p_org) x where x is not null);
    t text[] := array(select distinct x from unnest(p_tax) x where x is not null);
    old_keys text[];
    new_keys text[];
begin
    o := o || array(select core.uscc_org_code(x) from unnest(r) x)
           || array(select core.uscc_org_code(x) from unnest(t) x);
    o := array(select distinct x from unnest(o) x where x is not null);
    r := r || array(select i.reg_no from core.identifier i where (i.org_code = any(o) or i.taxpayer_id = any(t)))
           || array(select q.reg_no from exchange.qts_code_issuance q where q.org_code = any(o))
           || array(select x.reg_no from exchange.tax_registration x where (x.org_code = any(o) or x.taxpayer_id = any(t)))
           || array(select a.reg_no from exchange.aic_establishment a where core.uscc_org_code(a.reg_no) = any(o));
    o := o || array(select i.org_code from core.identifier i where (i.reg_no = any(r) or i.taxpayer_id = any(t)))
           || array(select q.org_code from exchange.qts_code_issuance q where q.reg_no = any(r))
           || array(select x.org_code from exchange.tax_registration x where x.reg_no = any(r))
           || array(select core.uscc_org_code(x) from unnest(r) x);
    r := array(select distinct x from unnest(r) x where x is not null);
    o := array(select distinct x from unnest(o) x where x is not null);
    t := t || array(select x.taxpayer_id from exchange.tax_registration x
                    where core.uscc_org_code(x.taxpayer_id) = any(o) or core.uscc_org_code(x.reg_no) = any(o));
    t := array(select distinct x from unnest(t) x where x is not null);
    with gone as (
        delete from core.identifier i
        where i.reg_no = any(r) or i.org_code = any(o) or i.taxpayer_id = any(t)
        returning i.enterprise_key)
    select array_agg(distinct enterprise_key) into old_keys from gone;

    insert into core.identifier
    select 'aic_establishment', a.source, a.source_key, a.bureau, a.division, a.reg_no, null, null,
           core.is_reg_no(a.reg_no), null, null,
           coalesce(ic.org_code, tc.org_code, core.uscc_org_code(a.reg_no),
                    'R:' || coalesce(a.reg_no, a.source || '/' || a.source_key))
    from exchange.aic_establishment a
    left join lateral (
        select q.org_code from exchange.qts_code_issuance q
        where q.reg_no = a.reg_no and q.deleted_at is null and core.is_org_code(q.org_code)
        order by exists (select 1 from exchange.qts_code_voided v
                         where v.org_code = q.org_code and v.deleted_at is null),
                 q.issued_on desc nulls last, q.org_code
        limit 1) ic on true
    left join lateral (
        select x.org_code from exchange.tax_registration x
        where ic.org_code is null and x.reg_no = a.reg_no and x.deleted_at is null
          and core.is_org_code(x.org_code)
        order by not exists (select 1 from exchange.qts_code_issuance q
                             where q.org_code = x.org_code and q.deleted_at is null),
                 exists (select 1 from exchange.qts_code_voided v
                         where v.org_code = x.org_code and v.deleted_at is null),
                 x.org_code
        limit 1) tc on true
    where a.deleted_at is null and a.reg_no = any(r)
    on conflict do nothing;

    insert into core.identifier
    select 'qts_code_issuance', q.source, q.source_key, q.bureau, q.division, q.reg_no, q.org_code, null,
           core.is_reg_no(q.reg_no), core.is_org_code(q.org_code), null,
           case when core.is_org_code(q.org_code) then q.org_code else 'Q:' || q.source || '/' || q.source_key end
    from exchange.qts_code_issuance q
    where q.deleted_at is null and (q.reg_no = any(r) or q.org_code = any(o))
    on conflict do nothing;

    insert into core.identifier
    select 'tax_registration', x.source, x.source_key, x.bureau, x.division, x.reg_no, x.org_code, x.taxpayer_id,
           core.is_reg_no(x.reg_no), core.is_org_code(x.org_code), core.is_taxpayer_id(x.taxpayer_id),
           case
               when core.is_org_code(x.org_code)
                    and exists (select 1 from exchange.qts_code_issuance q
                                where q.org_code = x.org_code and q.deleted_at is null)
                    and not exists (select 1 from exchange.qts_code_voided v
                                    where v.org_code = x.org_code and v.deleted_at is null)
                   then x.org_code
               when x.reg_no is not null and exists (
                   select 1 from exchange.aic_establishment a where a.reg_no = x.reg_no and a.deleted_at is null)
                   then coalesce(ic.org_code, tc.org_code, core.uscc_org_code(x.reg_no), 'R:' || x.reg_no)
               when core.is_org_code(x.org_code) then x.org_code
               when core.uscc_org_code(x.taxpayer_id) is not null then core.uscc_org_code(x.taxpayer_id)
               when core.uscc_org_code(x.reg_no) is not null then core.uscc_org_code(x.reg_no)
               else 'T:' || x.bureau || '/' || coalesce(x.taxpayer_id, x.source_key)
           end
    from exchange.tax_registration x
    left join lateral (
        select q.org_code from exchange.qts_code_issuance q
        where x.reg_no is not null and q.reg_no = x.reg_no and q.deleted_at is null
          and core.is_org_code(q.org_code)
        order by exists (select 1 from exchange.qts_code_voided v
                         where v.org_code = q.org_code and v.deleted_at is null),
                 q.issued_on desc nulls last, q.org_code
        limit 1) ic on true
    left join lateral (
        select t2.org_code from exchange.tax_registration t2
        where ic.org_code is null and x.reg_no is not null and t2.reg_no = x.reg_no
          and t2.deleted_at is null and core.is_org_code(t2.org_code)
        order by not exists (select 1 from exchange.qts_code_issuance q
                             where q.org_code = t2.org_code and q.deleted_at is null),
                 exists (select 1 from exchange.qts_code_voided v
                         where v.org_code = t2.org_code and v.deleted_at is null),
                 t2.org_code
        limit 1) tc on true
    where x.deleted_at is null and (x.reg_no = any(r) or x.org_code = any(o) or x.taxpayer_id = any(t))
    on conflict do nothing;

    select array_agg(distinct i.enterprise_key) into new_keys
    from core.identifier i
    where i.reg_no = any(r) or i.org_code = any(o) or i.taxpayer_id = any(t);
    perform core.refresh_enterprises(coalesce(old_keys, '{}') || coalesce(new_keys, '{}'));
end $$;
-- Refreshing many enterprises at once set-wise: the per-key version looks each bureau's
-- record up with a lateral index probe (ten per enterprise), right for a handful of keys
-- and most of a large drain's time. Above a few thousand keys the same choices are
-- made with joins the planner can hash (distinct on … order by is the lateral's
-- order by … limit 1), and with sequential scans allowed: a bulk refresh reads most of
-- the tables anyway.
alter function core.refresh_enterprises(text[]) rename to refresh_enterprises_by_key;

create function core.refresh_enterprises_bulk(keys text[]) returns void
language plpgsql set enable_seqscan = on set jit = off as $$
begin
    create temp table ebis_refresh_keys on commit drop as
        select distinct k as key from unnest(keys) k where k is not null;
    analyze ebis_refresh_keys;
    delete from core.enterprise e using ebis_refresh_keys k where e.enterprise_key = k.key;
    insert into core.enterprise
    with ids as (
        select i.* from core.identifier i join ebis_refresh_keys k on i.enterprise_key = k.key
    ), aic as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, a.*
        from ids i join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        where i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by i.enterprise_key, a.established_on desc nulls last, a.source_key
    ), qts as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, q.*
        from ids i join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        where i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by i.enterprise_key, q.issued_on desc nulls last, q.source_key
    ), nt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.*
        from ids i join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.record_kind = 'tax_registration' and t.bureau = 'ntax' and t.deleted_at is null
        order by i.enterprise_key, t.registered_on desc nulls last, t.source_key
    ), lt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.*
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

create function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
begin
    if cardinality(keys) > 5000 then
        perform core.refresh_enterprises_bulk(keys);
    else
        perform core.refresh_enterprises_by_key(keys);
    end if;
end $$;
comment on function core.refresh_enterprises(text[]) is '重算企业基础信息（少量按键逐个，大批量集合运算）';

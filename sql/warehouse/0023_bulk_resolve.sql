-- Resolving many identifiers at once set-wise. core.resolve takes its identifiers as
-- arrays, looks each up with `= any(array)` and picks each record's enterprise with
-- lateral lookups (index probes per record): right for a drain of a few statements, but
-- the drain after a first snapshot spent 37 s in it on a 100,000-enterprise city, and
-- more than eight minutes on a 1,000,000-enterprise one. Above 2,000 identifiers the
-- same steps now run on analyzed temporary tables with joins the planner can hash, and
-- the laterals' `order by … limit 1` become `distinct on` per registration number.
-- It allows sequential scans (core.drain, its caller, does not: its own lookups are by
-- key). The comparison and linking tests check both give the same crosswalk and base.

alter function core.resolve(text[], text[], text[]) rename to resolve_by_key;

create function core.resolve_bulk(p_reg text[], p_org text[], p_tax text[]) returns void
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
        select a.* from exchange.aic_establishment a join ebis_r r on a.reg_no = r.v
        where a.deleted_at is null;
    create temp table ebis_qts on commit drop as
        select q.* from exchange.qts_code_issuance q
        where q.deleted_at is null and (q.reg_no in (select v from ebis_r) or q.org_code in (select v from ebis_o));
    create temp table ebis_tax on commit drop as
        select x.* from exchange.tax_registration x
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
comment on function core.resolve_bulk(text[], text[], text[]) is '集合运算重算大量标识的企业归属（临时表与哈希连接）';

create function core.resolve(p_reg text[], p_org text[], p_tax text[]) returns void
language plpgsql as $$
begin
    if cardinality(p_reg) + cardinality(p_org) + cardinality(p_tax) > 2000 then
        perform core.resolve_bulk(p_reg, p_org, p_tax);
    else
        perform core.resolve_by_key(p_reg, p_org, p_tax);
    end if;
end $$;
comment on function core.resolve(text[], text[], text[]) is '重算标识的企业归属（少量按键，大量集合运算）';

-- A rebuild resolves everything: set-wise, whatever the size.
create or replace function core.rebuild() returns bigint
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    truncate core.identifier, core.enterprise, core.pending;
    perform core.resolve_bulk(
        array(select reg_no from exchange.aic_establishment where deleted_at is null
              union select reg_no from exchange.qts_code_issuance where deleted_at is null
              union select reg_no from exchange.tax_registration where deleted_at is null),
        array(select org_code from exchange.qts_code_issuance where deleted_at is null
              union select org_code from exchange.tax_registration where deleted_at is null),
        array(select taxpayer_id from exchange.tax_registration where deleted_at is null));
    perform core.drain(1);
    return (select count(*) from core.enterprise);
end $$;

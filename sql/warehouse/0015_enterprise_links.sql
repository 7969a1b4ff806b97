-- Enterprises linked as SPEC says, on bureau schemas the team never saw:
--
-- * An AIC record joins an org code through the QTS issuance record and through the tax
--   registrations, which carry both: a code known only from a tax registration (QTS's
--   issuance lacks the registration number) links too.
-- * A code QTS voided gives way to the one it issued after: the enterprise stays with the
--   current code, and a voided code beside its re-issue is no conflict. A bureau still on
--   the voided code is the conflict, and nothing else.
-- * Since the 2015 reform the 18-character unified social credit code stands as the
--   registration number and the taxpayer id, with the org code at characters 9-17: it is a
--   valid identifier of both kinds and links to the enterprise of the code it embeds.

create or replace function core.is_reg_no(n text) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
    p int := 10;
    s int;
begin
    if length(n) = 18 then
        return core.is_uscc(n);
    end if;
    if n ~ '^[0-9]{13}$' then
        return true;
    end if;
    if n !~ '^[0-9]{15}$' then
        return false;
    end if;
    for i in 1 .. 14 loop
        s := (p + substr(n, i, 1)::int) % 10;
        if s = 0 then
            s := 10;
        end if;
        p := (2 * s) % 11;
    end loop;
    return substr(n, 15, 1)::int = (11 - p) % 10;
end $$;
comment on function core.is_reg_no(text) is '工商注册号校验（15位：GB/T 17710 MOD 11,10；13位：仅格式；18位：统一社会信用代码）';

create or replace function core.is_taxpayer_id(t text) returns boolean
language sql immutable strict parallel safe as $$
    select case
        when length(t) = 18 and core.is_uscc(t) then true
        when length(t) = 15 and t ~ '^[0-9]{6}' and core.is_org_code(substr(t, 7)) then true
        when length(t) in (15, 18) then core.is_id_card(t)
        when length(t) in (17, 20) then substr(t, length(t) - 1) ~ '^[0-9]{2}$'
                                     and core.is_id_card(substr(t, 1, length(t) - 2))
        else false
    end
$$;
comment on function core.is_taxpayer_id(text) is '纳税人识别号校验（行政区划+组织机构代码、身份证号，或统一社会信用代码）';

-- The org code a unified social credit code embeds; NULL for anything else. (PL/pgSQL,
-- not SQL: exchange tables index it, and the planner would inline an SQL function into the
-- queries of readers who may not use schema core.)
create function core.uscc_org_code(c text) returns text
language plpgsql immutable strict parallel safe as $$
begin
    return case when core.is_uscc(c) then substr(c, 9, 9) end;
end $$;
comment on function core.uscc_org_code(text) is '统一社会信用代码中的组织机构代码（第9-17位）';

create index aic_establishment_uscc on exchange.aic_establishment (core.uscc_org_code(reg_no));
create index tax_registration_uscc on exchange.tax_registration (core.uscc_org_code(taxpayer_id));
create index tax_registration_reg_uscc on exchange.tax_registration (core.uscc_org_code(reg_no));

-- True when QTS voided the code.
create function core.is_voided(c text) returns boolean
language sql stable parallel safe set enable_seqscan = off as $$
    select exists (select 1 from exchange.qts_code_voided v where v.org_code = c and v.deleted_at is null)
$$;

-- The org code QTS issued for a registration number: a code in force before a voided one
-- (the smallest, if several).
create or replace function core.issued_code(r text) returns text
language sql stable parallel safe set enable_seqscan = off set jit = off as $$
    select q.org_code from exchange.qts_code_issuance q
    where q.reg_no = r and q.deleted_at is null and core.is_org_code(q.org_code)
    order by core.is_voided(q.org_code), q.org_code
    limit 1
$$;

-- The org code an enterprise registered under `r` is known by: the one QTS issued for
-- it; else the one its tax registrations hold (a code QTS issued first, one in force
-- first); else the one its unified social credit code embeds.
create function core.enterprise_code(r text) returns text
language sql stable parallel safe set enable_seqscan = off set jit = off as $$
    select coalesce(
        core.issued_code(r),
        (select x.org_code from exchange.tax_registration x
         where x.reg_no = r and x.deleted_at is null and core.is_org_code(x.org_code)
         order by not exists (select 1 from exchange.qts_code_issuance q
                              where q.org_code = x.org_code and q.deleted_at is null),
                  core.is_voided(x.org_code), x.org_code
         limit 1),
        core.uscc_org_code(r))
$$;
comment on function core.enterprise_code(text) is '注册号对应企业的组织机构代码：质监颁发（有效优先），否则税务登记所记，否则统一社会信用代码所含';

-- Registration numbers with several org codes in force (a voided code beside the one
-- issued after it is a re-issue, not a conflict).
create or replace view core.identifier_conflict as
select reg_no, array_agg(distinct org_code order by org_code) as org_codes,
       array_agg(distinct bureau order by bureau) as bureaus
from core.identifier
where reg_no is not null and org_code_valid and not core.is_voided(org_code)
group by reg_no
having count(distinct org_code) > 1;

-- Re-resolves the identifiers that share a registration number, org code or taxpayer id
-- with changed records (one step of expansion: a record joined through the other
-- identifier is included, and a credit code's embedded org code counts as one), then
-- refreshes the enterprises they belonged to and belong to.
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
           coalesce(core.enterprise_code(a.reg_no), 'R:' || coalesce(a.reg_no, a.source || '/' || a.source_key))
    from exchange.aic_establishment a
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
               when core.is_org_code(x.org_code) and exists (
                   select 1 from exchange.qts_code_issuance q where q.org_code = x.org_code and q.deleted_at is null)
                   and not core.is_voided(x.org_code)
                   then x.org_code
               when x.reg_no is not null and exists (
                   select 1 from exchange.aic_establishment a where a.reg_no = x.reg_no and a.deleted_at is null)
                   then coalesce(core.enterprise_code(x.reg_no), 'R:' || x.reg_no)
               when core.is_org_code(x.org_code) then x.org_code
               when core.uscc_org_code(x.taxpayer_id) is not null then core.uscc_org_code(x.taxpayer_id)
               when core.uscc_org_code(x.reg_no) is not null then core.uscc_org_code(x.reg_no)
               else 'T:' || x.bureau || '/' || coalesce(x.taxpayer_id, x.source_key)
           end
    from exchange.tax_registration x
    where x.deleted_at is null and (x.reg_no = any(r) or x.org_code = any(o) or x.taxpayer_id = any(t))
    on conflict do nothing;

    select array_agg(distinct i.enterprise_key) into new_keys
    from core.identifier i
    where i.reg_no = any(r) or i.org_code = any(o) or i.taxpayer_id = any(t);
    perform core.refresh_enterprises(coalesce(old_keys, '{}') || coalesce(new_keys, '{}'));
end $$;

-- The base trigger, as in 0009, and: a voided (or restored) code re-resolves the records
-- that carry it.
create or replace function core.on_exchange_change() returns trigger
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    relevant text[] := string_to_array(tg_argv[0], ',');
    identity constant text[] := array['reg_no', 'org_code', 'taxpayer_id', 'deleted_at'];
    resolving boolean := tg_table_name in ('aic_establishment', 'qts_code_issuance', 'tax_registration');
    rows jsonb[];
    refresh jsonb[];
    r text[];
    o text[];
    t text[];
begin
    -- One source at a time maintains the base: a transaction that reaches this point waits
    -- for the others to commit, then sees their rows (statements in read committed take
    -- fresh snapshots), so no link is computed from a half-visible picture.
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    if tg_op = 'INSERT' then
        rows := array(select to_jsonb(n) - 'raw_row' from new_rows n);
    elsif tg_op = 'DELETE' then
        rows := array(select to_jsonb(d) - 'raw_row' from old_rows d);
    else
        with pairs as (
            select to_jsonb(n) - 'raw_row' as nj, to_jsonb(d) - 'raw_row' as oj
            from new_rows n join old_rows d on d.source = n.source and d.source_key = n.source_key
        ), changed as (
            select nj, oj,
                   exists (select 1 from unnest(identity) c where nj -> c is distinct from oj -> c) as moved
            from pairs
            where exists (select 1 from unnest(relevant) c where nj -> c is distinct from oj -> c)
        )
        select array(select x from changed, lateral (values (nj), (oj)) v(x) where moved or not resolving),
               array(select nj from changed where not moved and resolving)
          into rows, refresh
          from (select 1) one;
    end if;
    select coalesce(array_agg(j->>'reg_no') filter (where j ? 'reg_no'), '{}'),
           coalesce(array_agg(j->>'org_code') filter (where j ? 'org_code'), '{}'),
           coalesce(array_agg(j->>'taxpayer_id') filter (where j ? 'taxpayer_id'), '{}')
      into r, o, t
      from unnest(rows) j;
    if resolving then
        if cardinality(rows) > 0 then
            perform core.resolve(r, o, t);
        end if;
        if cardinality(refresh) > 0 then
            perform core.refresh_enterprises(array(
                select distinct i.enterprise_key from core.identifier i
                join unnest(refresh) j on i.record_kind = tg_table_name::text collate "default"
                     and i.source = j->>'source' and i.source_key = j->>'source_key'));
        end if;
    elsif cardinality(rows) > 0 then
        -- A code voided (or un-voided) changes which code its registration number links
        -- to: re-resolve the records carrying it.
        if tg_table_name = 'qts_code_voided' then
            perform core.resolve('{}', o, '{}');
        end if;
        perform core.refresh_enterprises(array(
            select distinct i.enterprise_key from core.identifier i
            where (i.record_kind = 'aic_establishment' and i.reg_no = any(r))
               or (i.record_kind = 'qts_code_issuance' and i.org_code = any(o))
               or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(t))));
    end if;
    return null;
end $$;

-- The enterprise base (企业基础信息库), kept current by triggers on the exchange tables.
--
-- core.identifier: one row per identity-bearing exchange record (AIC establishment, QTS
--   issuance, tax registration) with the enterprise it belongs to. An enterprise is keyed
--   by the org code QTS issued ("以组织机构代码为主键"); an AIC record without one is
--   keyed 'R:' || reg_no. A tax record joins by an org code QTS issued, else by a reg_no
--   AIC registered, else stands alone.
-- core.enterprise: one row per key — the AIC-based golden record, what each other bureau
--   holds, and the derived status per bureau.
--
-- Statement-level triggers with transition tables re-resolve only the identifiers and
-- enterprises a statement touched, so bulk applies stay one statement per record kind.
-- They serialize on one advisory lock, so concurrent sources never race on a key.

create index aic_establishment_reg_no on exchange.aic_establishment (reg_no);
create index aic_deregistration_reg_no on exchange.aic_deregistration (reg_no);
create index aic_revocation_reg_no on exchange.aic_revocation (reg_no);
create index qts_code_issuance_reg_no on exchange.qts_code_issuance (reg_no);
create index qts_code_issuance_org_code on exchange.qts_code_issuance (org_code);
create index qts_code_voided_org_code on exchange.qts_code_voided (org_code);
create index tax_registration_reg_no on exchange.tax_registration (reg_no);
create index tax_registration_org_code on exchange.tax_registration (org_code);
create index tax_registration_taxpayer_id on exchange.tax_registration (taxpayer_id);
create index tax_deregistration_taxpayer_id on exchange.tax_deregistration (taxpayer_id);
create index tax_abnormal_taxpayer_id on exchange.tax_abnormal (taxpayer_id);
create index tax_revocation_request_reg_no on exchange.tax_revocation_request (reg_no);

create table core.identifier (
    record_kind text not null,
    source text not null,
    source_key text not null,
    bureau text not null,
    division text not null,
    reg_no text,
    org_code text,
    taxpayer_id text,
    reg_no_valid boolean,
    org_code_valid boolean,
    taxpayer_id_valid boolean,
    enterprise_key text not null,
    primary key (record_kind, source, source_key)
);
create index identifier_reg_no on core.identifier (reg_no);
create index identifier_org_code on core.identifier (org_code);
create index identifier_taxpayer_id on core.identifier (taxpayer_id);
create index identifier_enterprise on core.identifier (enterprise_key, record_kind);
comment on table core.identifier is '标识符对照：组织机构代码 ↔ 注册号 ↔ 纳税人识别号（按部门），每条交换记录一行';
comment on column core.identifier.record_kind is '记录类型（交换表）';
comment on column core.identifier.source is '来源名称';
comment on column core.identifier.source_key is '源记录主键';
comment on column core.identifier.bureau is '部门';
comment on column core.identifier.division is '行政区划代码';
comment on column core.identifier.reg_no is '注册号（该部门所记）';
comment on column core.identifier.org_code is '组织机构代码（该部门所记）';
comment on column core.identifier.taxpayer_id is '纳税人识别号';
comment on column core.identifier.reg_no_valid is '注册号校验通过';
comment on column core.identifier.org_code_valid is '组织机构代码校验通过';
comment on column core.identifier.taxpayer_id_valid is '纳税人识别号校验通过';
comment on column core.identifier.enterprise_key is '所属企业（组织机构代码；无代码时为 R:注册号）';

create view core.identifier_conflict as
select reg_no, array_agg(distinct org_code order by org_code) as org_codes,
       array_agg(distinct bureau order by bureau) as bureaus
from core.identifier
where reg_no is not null and org_code_valid
group by reg_no
having count(distinct org_code) > 1;
comment on view core.identifier_conflict is '标识符冲突：同一注册号对应多个组织机构代码';

create table core.enterprise (
    enterprise_key text primary key,
    org_code text unique,
    reg_no text,
    name text,
    legal_rep text,
    legal_rep_id_no text,
    address text,
    enterprise_type text,
    industry_code text,
    division text,
    established_on date,
    aic_status text check (aic_status in ('active', 'deregistered', 'revoked')),
    aic_closed_on date,
    aic_seen_at timestamptz,
    qts_status text check (qts_status in ('issued', 'voided')),
    qts_name text,
    qts_issued_on date,
    qts_voided_on date,
    qts_seen_at timestamptz,
    ntax_taxpayer_id text,
    ntax_name text,
    ntax_legal_rep text,
    ntax_address text,
    ntax_registered_on date,
    ntax_deregistered_on date,
    ntax_abnormal_since date,
    ntax_status text check (ntax_status in ('active', 'deregistered', 'abnormal')),
    ntax_seen_at timestamptz,
    ltax_taxpayer_id text,
    ltax_name text,
    ltax_legal_rep text,
    ltax_address text,
    ltax_registered_on date,
    ltax_deregistered_on date,
    ltax_abnormal_since date,
    ltax_status text check (ltax_status in ('active', 'deregistered', 'abnormal')),
    ltax_seen_at timestamptz,
    name_norm text,
    legal_rep_norm text,
    address_norm text,
    qts_name_norm text,
    ntax_name_norm text,
    ntax_legal_rep_norm text,
    ntax_address_norm text,
    ltax_name_norm text,
    ltax_legal_rep_norm text,
    ltax_address_norm text,
    updated_at timestamptz not null default now()
);
create index enterprise_name_norm on core.enterprise (name_norm);
create index enterprise_reg_no on core.enterprise (reg_no);
create index enterprise_division on core.enterprise (division);
comment on table core.enterprise is '企业基础信息库：一户一档，以工商登记为基础，其余部门信息补充并比对';
comment on column core.enterprise.enterprise_key is '企业主键（组织机构代码；无代码时为 R:注册号）';
comment on column core.enterprise.org_code is '组织机构代码（质监颁发）';
comment on column core.enterprise.reg_no is '注册号';
comment on column core.enterprise.name is '企业名称（工商）';
comment on column core.enterprise.legal_rep is '法定代表人（工商）';
comment on column core.enterprise.legal_rep_id_no is '法定代表人身份证件号码（敏感，分析员不可见）';
comment on column core.enterprise.address is '住所（工商）';
comment on column core.enterprise.enterprise_type is '企业类型';
comment on column core.enterprise.industry_code is '行业代码';
comment on column core.enterprise.division is '行政区划代码';
comment on column core.enterprise.established_on is '成立日期';
comment on column core.enterprise.aic_status is '工商状态（active 在营, deregistered 注销, revoked 吊销）';
comment on column core.enterprise.aic_closed_on is '工商注销或吊销日期';
comment on column core.enterprise.aic_seen_at is '工商记录最近变更时间';
comment on column core.enterprise.qts_status is '代码状态（issued 已颁证, voided 已废置）';
comment on column core.enterprise.qts_name is '机构名称（质监）';
comment on column core.enterprise.qts_issued_on is '颁证日期';
comment on column core.enterprise.qts_voided_on is '废置日期';
comment on column core.enterprise.qts_seen_at is '质监记录最近变更时间';
comment on column core.enterprise.ntax_taxpayer_id is '纳税人识别号（国税）';
comment on column core.enterprise.ntax_name is '纳税人名称（国税）';
comment on column core.enterprise.ntax_legal_rep is '法定代表人（国税）';
comment on column core.enterprise.ntax_address is '注册地址（国税）';
comment on column core.enterprise.ntax_registered_on is '税务登记日期（国税）';
comment on column core.enterprise.ntax_deregistered_on is '注销日期（国税）';
comment on column core.enterprise.ntax_abnormal_since is '非正常户认定日期（国税，未解除）';
comment on column core.enterprise.ntax_status is '国税状态（active 正常, deregistered 注销, abnormal 非正常）';
comment on column core.enterprise.ntax_seen_at is '国税记录最近变更时间';
comment on column core.enterprise.ltax_taxpayer_id is '纳税人识别号（地税）';
comment on column core.enterprise.ltax_name is '纳税人名称（地税）';
comment on column core.enterprise.ltax_legal_rep is '法定代表人（地税）';
comment on column core.enterprise.ltax_address is '注册地址（地税）';
comment on column core.enterprise.ltax_registered_on is '税务登记日期（地税）';
comment on column core.enterprise.ltax_deregistered_on is '注销日期（地税）';
comment on column core.enterprise.ltax_abnormal_since is '非正常户认定日期（地税，未解除）';
comment on column core.enterprise.ltax_status is '地税状态（active 正常, deregistered 注销, abnormal 非正常）';
comment on column core.enterprise.ltax_seen_at is '地税记录最近变更时间';
comment on column core.enterprise.name_norm is '名称（规范化，比对用）';
comment on column core.enterprise.legal_rep_norm is '法定代表人（规范化，比对用）';
comment on column core.enterprise.address_norm is '住所（规范化，比对用）';
comment on column core.enterprise.qts_name_norm is '机构名称（质监，规范化）';
comment on column core.enterprise.ntax_name_norm is '纳税人名称（国税，规范化）';
comment on column core.enterprise.ntax_legal_rep_norm is '法定代表人（国税，规范化）';
comment on column core.enterprise.ntax_address_norm is '注册地址（国税，规范化）';
comment on column core.enterprise.ltax_name_norm is '纳税人名称（地税，规范化）';
comment on column core.enterprise.ltax_legal_rep_norm is '法定代表人（地税，规范化）';
comment on column core.enterprise.ltax_address_norm is '注册地址（地税，规范化）';
comment on column core.enterprise.updated_at is '更新时间';

-- When a record was last true at its source (commit time when known, else apply time).
create function core.seen(commit_time timestamptz, applied_at timestamptz) returns timestamptz
language sql immutable parallel safe as $$ select coalesce(commit_time, applied_at) $$;

-- The org code QTS issued for a registration number (the smallest valid one, if several).
create function core.issued_code(r text) returns text
language sql stable parallel safe set enable_seqscan = off set jit = off as $$
    select min(q.org_code) from exchange.qts_code_issuance q
    where q.reg_no = r and q.deleted_at is null and core.is_org_code(q.org_code)
$$;

-- Recomputes the enterprises with these keys from the identifiers and exchange tables.
-- (Maintenance functions run with enable_seqscan off: they only look up keys, and while
-- a first snapshot fills empty tables the statistics would otherwise say "tiny table,
-- scan it", which grows quadratic with the table. And with jit off: their plans look
-- expensive on paper, and compiling them took longer than running them.)
create function core.refresh_enterprises(keys text[]) returns void
language plpgsql set enable_seqscan = off set jit = off as $$
begin
    delete from core.enterprise where enterprise_key = any(keys);
    insert into core.enterprise
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
                when rev.present then 'revoked'
                when dereg.present then 'deregistered'
                else 'active' end,
           coalesce(rev.on_, dereg.on_),
           greatest(core.seen(aic.source_commit_time, aic.applied_at), rev.seen, dereg.seen),
           case when qts.source is null then null when qv.present then 'voided' else 'issued' end,
           qts.org_name,
           qts.issued_on,
           qv.on_,
           greatest(core.seen(qts.source_commit_time, qts.applied_at), qv.seen),
           nt.taxpayer_id, nt.taxpayer_name, nt.legal_rep, nt.address, nt.registered_on,
           ntd.on_, nta.since,
           case when nt.source is null then null when ntd.present then 'deregistered'
                when nta.since is not null then 'abnormal' else 'active' end,
           greatest(core.seen(nt.source_commit_time, nt.applied_at), ntd.seen, nta.seen),
           lt.taxpayer_id, lt.taxpayer_name, lt.legal_rep, lt.address, lt.registered_on,
           ltd.on_, lta.since,
           case when lt.source is null then null when ltd.present then 'deregistered'
                when lta.since is not null then 'abnormal' else 'active' end,
           greatest(core.seen(lt.source_commit_time, lt.applied_at), ltd.seen, lta.seen),
           core.norm_text(coalesce(aic.name, qts.org_name, nt.taxpayer_name, lt.taxpayer_name)),
           core.norm_text(coalesce(aic.legal_rep, nt.legal_rep, lt.legal_rep)),
           core.norm_text(coalesce(aic.address, nt.address, lt.address)),
           core.norm_text(qts.org_name),
           core.norm_text(nt.taxpayer_name), core.norm_text(nt.legal_rep), core.norm_text(nt.address),
           core.norm_text(lt.taxpayer_name), core.norm_text(lt.legal_rep), core.norm_text(lt.address),
           now()
    from (select distinct unnest(keys) as key) k
    left join lateral (
        select a.* from core.identifier i
        join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        where i.enterprise_key = k.key and i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by a.established_on desc nulls last, a.source_key limit 1) aic on true
    left join lateral (
        select count(*) > 0 as present, max(d.deregistered_on) as on_,
               max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.aic_deregistration d where d.reg_no = aic.reg_no and d.deleted_at is null) dereg on true
    left join lateral (
        select count(*) > 0 as present, max(r.revoked_on) as on_,
               max(core.seen(r.source_commit_time, r.applied_at)) as seen
        from exchange.aic_revocation r where r.reg_no = aic.reg_no and r.deleted_at is null) rev on true
    left join lateral (
        select q.* from core.identifier i
        join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        where i.enterprise_key = k.key and i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by q.issued_on desc nulls last, q.source_key limit 1) qts on true
    left join lateral (
        select count(*) > 0 as present, max(v.voided_on) as on_,
               max(core.seen(v.source_commit_time, v.applied_at)) as seen
        from exchange.qts_code_voided v where v.org_code = qts.org_code and v.deleted_at is null) qv on true
    left join lateral (
        select t.* from core.identifier i
        join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.enterprise_key = k.key and i.record_kind = 'tax_registration' and t.bureau = 'ntax'
          and t.deleted_at is null
        order by t.registered_on desc nulls last, t.source_key limit 1) nt on true
    left join lateral (
        select count(*) > 0 as present, max(d.deregistered_on) as on_,
               max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.tax_deregistration d
        where d.bureau = 'ntax' and d.taxpayer_id = nt.taxpayer_id and d.deleted_at is null) ntd on true
    left join lateral (
        select min(coalesce(a.identified_on, date '1900-01-01')) filter (where a.lifted_on is null) as since,
               max(core.seen(a.source_commit_time, a.applied_at)) as seen
        from exchange.tax_abnormal a
        where a.bureau = 'ntax' and a.taxpayer_id = nt.taxpayer_id and a.deleted_at is null) nta on true
    left join lateral (
        select t.* from core.identifier i
        join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.enterprise_key = k.key and i.record_kind = 'tax_registration' and t.bureau = 'ltax'
          and t.deleted_at is null
        order by t.registered_on desc nulls last, t.source_key limit 1) lt on true
    left join lateral (
        select count(*) > 0 as present, max(d.deregistered_on) as on_,
               max(core.seen(d.source_commit_time, d.applied_at)) as seen
        from exchange.tax_deregistration d
        where d.bureau = 'ltax' and d.taxpayer_id = lt.taxpayer_id and d.deleted_at is null) ltd on true
    left join lateral (
        select min(coalesce(a.identified_on, date '1900-01-01')) filter (where a.lifted_on is null) as since,
               max(core.seen(a.source_commit_time, a.applied_at)) as seen
        from exchange.tax_abnormal a
        where a.bureau = 'ltax' and a.taxpayer_id = lt.taxpayer_id and a.deleted_at is null) lta on true
    where aic.source is not null or qts.source is not null or nt.source is not null or lt.source is not null;
end $$;

-- Re-resolves the identifiers that share a registration number, org code or taxpayer id
-- with changed records (one step of expansion: a record joined through the other
-- identifier is included), then refreshes the enterprises they belonged to and belong to.
create function core.resolve(p_reg text[], p_org text[], p_tax text[]) returns void
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    r text[] := array(select distinct x from unnest(p_reg) x where x is not null);
    o text[] := array(select distinct x from unnest(p_org) x where x is not null);
    t text[] := array(select distinct x from unnest(p_tax) x where x is not null);
    old_keys text[];
    new_keys text[];
begin
    r := r || array(select i.reg_no from core.identifier i where (i.org_code = any(o) or i.taxpayer_id = any(t)))
           || array(select q.reg_no from exchange.qts_code_issuance q where q.org_code = any(o))
           || array(select x.reg_no from exchange.tax_registration x where (x.org_code = any(o) or x.taxpayer_id = any(t)));
    o := o || array(select i.org_code from core.identifier i where (i.reg_no = any(r) or i.taxpayer_id = any(t)))
           || array(select q.org_code from exchange.qts_code_issuance q where q.reg_no = any(r))
           || array(select x.org_code from exchange.tax_registration x where x.reg_no = any(r));
    r := array(select distinct x from unnest(r) x where x is not null);
    o := array(select distinct x from unnest(o) x where x is not null);
    with gone as (
        delete from core.identifier i
        where i.reg_no = any(r) or i.org_code = any(o) or i.taxpayer_id = any(t)
        returning i.enterprise_key)
    select array_agg(distinct enterprise_key) into old_keys from gone;

    insert into core.identifier
    select 'aic_establishment', a.source, a.source_key, a.bureau, a.division, a.reg_no, null, null,
           core.is_reg_no(a.reg_no), null, null,
           coalesce(core.issued_code(a.reg_no), 'R:' || coalesce(a.reg_no, a.source || '/' || a.source_key))
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
                   then x.org_code
               when x.reg_no is not null and exists (
                   select 1 from exchange.aic_establishment a where a.reg_no = x.reg_no and a.deleted_at is null)
                   then coalesce(core.issued_code(x.reg_no), 'R:' || x.reg_no)
               when core.is_org_code(x.org_code) then x.org_code
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

-- The trigger: collects the identifiers of the changed rows (old and new) and refreshes
-- what depends on them. Its argument lists the columns the base reads from that table:
-- an update that changes none of them (a new phone number) costs nothing more, one that
-- changes only descriptive ones refreshes the enterprise without re-resolving links.
create function core.on_exchange_change() returns trigger
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
                join unnest(refresh) j on i.record_kind = tg_table_name
                     and i.source = j->>'source' and i.source_key = j->>'source_key'));
        end if;
    elsif cardinality(rows) > 0 then
        perform core.refresh_enterprises(array(
            select distinct i.enterprise_key from core.identifier i
            where (i.record_kind = 'aic_establishment' and i.reg_no = any(r))
               or (i.record_kind = 'qts_code_issuance' and i.org_code = any(o))
               or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(t))));
    end if;
    return null;
end $$;

do $$
declare
    t record;
begin
    for t in select * from (values
        ('aic_establishment', 'reg_no,name,legal_rep,legal_rep_id_no,address,enterprise_type,industry_code,division,established_on,deleted_at'),
        ('aic_deregistration', 'reg_no,deregistered_on,deleted_at'),
        ('aic_revocation', 'reg_no,revoked_on,deleted_at'),
        ('qts_code_issuance', 'reg_no,org_code,org_name,issued_on,division,deleted_at'),
        ('qts_code_voided', 'org_code,voided_on,deleted_at'),
        ('tax_registration', 'org_code,reg_no,taxpayer_id,taxpayer_name,legal_rep,address,registered_on,division,deleted_at'),
        ('tax_deregistration', 'taxpayer_id,deregistered_on,deleted_at'),
        ('tax_abnormal', 'taxpayer_id,identified_on,lifted_on,deleted_at')) v(name, cols) loop
        execute format('create trigger core_on_insert after insert on exchange.%I
                          referencing new table as new_rows
                          for each statement execute function core.on_exchange_change(%L)', t.name, t.cols);
        execute format('create trigger core_on_update after update on exchange.%I
                          referencing old table as old_rows new table as new_rows
                          for each statement execute function core.on_exchange_change(%L)', t.name, t.cols);
        execute format('create trigger core_on_delete after delete on exchange.%I
                          referencing old table as old_rows
                          for each statement execute function core.on_exchange_change(%L)', t.name, t.cols);
    end loop;
end $$;

-- Rebuilds the whole base (after a bulk repair, or to check the triggers).
create function core.rebuild() returns bigint
language plpgsql as $$
begin
    truncate core.identifier, core.enterprise;
    perform core.resolve(
        array(select reg_no from exchange.aic_establishment where deleted_at is null
              union select reg_no from exchange.qts_code_issuance where deleted_at is null
              union select reg_no from exchange.tax_registration where deleted_at is null),
        array(select org_code from exchange.qts_code_issuance where deleted_at is null
              union select org_code from exchange.tax_registration where deleted_at is null),
        array(select taxpayer_id from exchange.tax_registration where deleted_at is null));
    return (select count(*) from core.enterprise);
end $$;
comment on function core.rebuild() is '重建企业基础信息库（批量修复后，或核对触发器结果）';

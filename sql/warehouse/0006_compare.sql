-- The consistency comparison (信息一致性比对): one view per rule of SPEC, all rows in one
-- shape, and findings with history.
--
-- Every view is lag-aware and coverage-aware: a finding is reported only when every
-- bureau it involves covers the enterprise's division (ebis.coverage) and is complete up
-- to the time of the evidence (ebis.source_status.complete_up_to), so a change still in
-- flight, or a district a bureau is not connected for, never makes a finding.
--
-- Columns of every rule view: rule, subject (what the finding is about, stable across
-- runs), enterprise_key, org_code, reg_no, enterprise_name, division, bureaus (who must
-- act), detail (the values that disagree), since (business date the condition holds
-- from), evidence_at (when the deciding record arrived), involved (bureaus whose data it
-- rests on).

create schema compare;
comment on schema compare is '信息一致性比对：每条规则一个视图；比对结果及其历史';

create table compare.setting (
    key text primary key,
    value text not null,
    comment text not null
);
comment on table compare.setting is '比对参数（期限等）；修改后下次比对生效';
insert into compare.setting values
    ('as_of', '', '比对基准日（空为当天）'),
    ('tax_registration_days', '30', '领取营业执照后办理税务登记的期限（天，征管法第15条）'),
    ('aic_closed_grace_days', '15', '工商注销或吊销后税务注销的期限（天，细则第15条）'),
    ('tax_closed_grace_days', '30', '税务注销后工商仍在营的容忍期（天）'),
    ('org_code_days', '30', '登记后办理组织机构代码的期限（天）'),
    ('revocation_request_days', '60', '提请吊销后工商处理的期限（天）');

create function compare.as_of() returns date
language sql stable as $$
    select coalesce(nullif((select value from compare.setting where key = 'as_of'), '')::date, current_date)
$$;

create function compare.days(k text) returns int
language sql stable as $$ select value::int from compare.setting where key = k $$;

create view compare.completeness as
select c.bureau, c.division, max(s.complete_up_to) as complete_at
from ebis.coverage c join ebis.source_status s on s.source = c.source
group by c.bureau, c.division;
comment on view compare.completeness is '各部门各区划的数据完整至时间（比对只采信此前的数据）';

-- The settings as one row, so a view reads them once.
create view compare.params as
select compare.as_of() as as_of,
       compare.days('tax_registration_days') as tax_registration_days,
       compare.days('aic_closed_grace_days') as aic_closed_grace_days,
       compare.days('tax_closed_grace_days') as tax_closed_grace_days,
       compare.days('org_code_days') as org_code_days,
       compare.days('revocation_request_days') as revocation_request_days;

-- Which bureaus cover each division.
create view compare.division_coverage as
select division, bool_or(bureau = 'aic') as aic, bool_or(bureau = 'qts') as qts,
       bool_or(bureau = 'ntax') as ntax, bool_or(bureau = 'ltax') as ltax
from ebis.coverage group by division;

create function compare.covers(b text, d text) returns boolean
language sql stable as $$ select exists (select 1 from ebis.coverage c where c.bureau = b and c.division = d) $$;

-- True when every involved bureau covers the division and is complete up to `evidence`.
create function compare.settled(involved text[], d text, evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(exists (
        select 1 from compare.completeness c
        where c.bureau = b and c.division = d and c.complete_at >= coalesce(evidence, '-infinity'))), true)
    from unnest(involved) b
$$;

-- The same, for records not tied to one covered division (a city-level report): every
-- division each bureau covers must be complete up to `evidence`.
create function compare.settled_everywhere(involved text[], evidence timestamptz) returns boolean
language sql stable as $$
    select coalesce(bool_and(coalesce((select min(coalesce(c.complete_at, '-infinity')) >= coalesce(evidence, '-infinity')
                                       from compare.completeness c where c.bureau = b), false)), true)
    from unnest(involved) b
$$;

-- ID-card numbers in views: whole for members of ebis_id_reader (and superusers), masked
-- for everybody else — and always masked while a comparison run stores findings
-- (compare.refresh sets ebis.mask_ids), so compare.finding never holds one.
create function compare.visible_id(s text) returns text
language sql stable as $$
    select case when s is null then null
                when coalesce(current_setting('ebis.mask_ids', true), '') <> 'on'
                     and (pg_has_role(current_user, 'ebis_id_reader', 'member')
                          or (select rolsuper from pg_roles where rolname = current_user)) then s
                else core.mask_id(s) end
$$;

-- Taxpayer ids of individuals are ID-card numbers: masked like them; those built from an
-- org code are shown.
create function compare.visible_taxpayer_id(t text) returns text
language sql stable as $$
    select case when t ~ '^[0-9]{6}' and length(t) = 15 and core.is_org_code(substr(t, 7)) then t
                else compare.visible_id(t) end
$$;

create function compare.greatest_seen(e core.enterprise, bureaus text[]) returns timestamptz
language sql stable as $$
    select max(t) from (values
        (case when 'aic' = any(bureaus) then e.aic_seen_at end),
        (case when 'qts' = any(bureaus) then e.qts_seen_at end),
        (case when 'ntax' = any(bureaus) then e.ntax_seen_at end),
        (case when 'ltax' = any(bureaus) then e.ltax_seen_at end)) v(t)
$$;

-- 1 漏征漏管户: AIC-registered (active) past the deadline, no tax registration at a
-- bureau that covers the division.
create view compare.registered_not_tax_registered
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'registered_not_tax_registered'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no,
       e.name, e.division, m.missing,
       jsonb_build_object('missing_at', m.missing, 'established_on', e.established_on),
       e.established_on + p.tax_registration_days, e.aic_seen_at, array['aic'] || m.missing
from core.enterprise e
cross join compare.params p
left join compare.division_coverage c on c.division = e.division
cross join lateral (select array_remove(array[
    case when e.ntax_status is null and c.ntax then 'ntax' end,
    case when e.ltax_status is null and c.ltax then 'ltax' end], null) as missing) m
where e.aic_status = 'active'
  and e.established_on + p.tax_registration_days < p.as_of
  and cardinality(m.missing) > 0
  and compare.settled(array['aic'] || m.missing, e.division, e.aic_seen_at);

-- 2 AIC deregistered or revoked past the grace period, a tax registration still active.
create view compare.aic_closed_tax_active
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'aic_closed_tax_active'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, a.active,
       jsonb_build_object('aic', e.aic_status, 'aic_closed_on', e.aic_closed_on,
                          'ntax', e.ntax_status, 'ltax', e.ltax_status),
       e.aic_closed_on + p.aic_closed_grace_days, e.aic_seen_at, array['aic'] || a.active
from core.enterprise e
cross join compare.params p
cross join lateral (select array_remove(array[
    case when e.ntax_status = 'active' then 'ntax' end,
    case when e.ltax_status = 'active' then 'ltax' end], null) as active) a
where e.aic_status in ('deregistered', 'revoked')
  and e.aic_closed_on + p.aic_closed_grace_days < p.as_of
  and cardinality(a.active) > 0
  and compare.settled(array['aic'] || a.active, e.division, e.aic_seen_at);

-- 3 Tax deregistered past the grace period, AIC still active.
create view compare.tax_closed_aic_active
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'tax_closed_aic_active'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, array['aic']::text[],
       jsonb_strip_nulls(jsonb_build_object('aic', e.aic_status, 'ntax_deregistered_on', e.ntax_deregistered_on,
                                            'ltax_deregistered_on', e.ltax_deregistered_on)),
       least(e.ntax_deregistered_on, e.ltax_deregistered_on) + p.tax_closed_grace_days,
       compare.greatest_seen(e, c.closed), array['aic'] || c.closed
from core.enterprise e
cross join compare.params p
cross join lateral (select array_remove(array[
    case when e.ntax_deregistered_on + p.tax_closed_grace_days < p.as_of then 'ntax' end,
    case when e.ltax_deregistered_on + p.tax_closed_grace_days < p.as_of then 'ltax' end], null) as closed) c
where e.aic_status = 'active' and (e.ntax_deregistered_on is not null or e.ltax_deregistered_on is not null)
  and cardinality(c.closed) > 0
  and compare.settled(array['aic'] || c.closed, e.division, compare.greatest_seen(e, c.closed));

-- 4 Names that differ between AIC and another bureau after normalization.
create view compare.name_mismatch
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'name_mismatch'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, d.bureaus,
       jsonb_strip_nulls(jsonb_build_object('aic', e.name,
           'qts', case when 'qts' = any(d.bureaus) then e.qts_name end,
           'ntax', case when 'ntax' = any(d.bureaus) then e.ntax_name end,
           'ltax', case when 'ltax' = any(d.bureaus) then e.ltax_name end)),
       null::date, compare.greatest_seen(e, array['aic'] || d.bureaus), array['aic'] || d.bureaus
from core.enterprise e
cross join lateral (select array_remove(array[
    case when e.qts_name_norm <> e.name_norm then 'qts' end,
    case when e.ntax_name_norm <> e.name_norm then 'ntax' end,
    case when e.ltax_name_norm <> e.name_norm then 'ltax' end], null) as bureaus) d
where e.aic_status is not null
  and (e.qts_name_norm <> e.name_norm or e.ntax_name_norm <> e.name_norm or e.ltax_name_norm <> e.name_norm)
  and compare.settled(array['aic'] || d.bureaus, e.division, compare.greatest_seen(e, array['aic'] || d.bureaus));

-- 5 Legal representative differs between AIC and tax.
create view compare.legal_rep_mismatch
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'legal_rep_mismatch'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, d.bureaus,
       jsonb_strip_nulls(jsonb_build_object('aic', e.legal_rep,
           'ntax', case when 'ntax' = any(d.bureaus) then e.ntax_legal_rep end,
           'ltax', case when 'ltax' = any(d.bureaus) then e.ltax_legal_rep end)),
       null::date, compare.greatest_seen(e, array['aic'] || d.bureaus), array['aic'] || d.bureaus
from core.enterprise e
cross join lateral (select array_remove(array[
    case when e.ntax_legal_rep_norm <> e.legal_rep_norm then 'ntax' end,
    case when e.ltax_legal_rep_norm <> e.legal_rep_norm then 'ltax' end], null) as bureaus) d
where e.aic_status is not null
  and (e.ntax_legal_rep_norm <> e.legal_rep_norm or e.ltax_legal_rep_norm <> e.legal_rep_norm)
  and compare.settled(array['aic'] || d.bureaus, e.division, compare.greatest_seen(e, array['aic'] || d.bureaus));

-- 6 Address differs between AIC and tax after normalization.
create view compare.address_mismatch
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'address_mismatch'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, d.bureaus,
       jsonb_strip_nulls(jsonb_build_object('aic', e.address,
           'ntax', case when 'ntax' = any(d.bureaus) then e.ntax_address end,
           'ltax', case when 'ltax' = any(d.bureaus) then e.ltax_address end)),
       null::date, compare.greatest_seen(e, array['aic'] || d.bureaus), array['aic'] || d.bureaus
from core.enterprise e
cross join lateral (select array_remove(array[
    case when e.ntax_address_norm <> e.address_norm then 'ntax' end,
    case when e.ltax_address_norm <> e.address_norm then 'ltax' end], null) as bureaus) d
where e.aic_status is not null
  and (e.ntax_address_norm <> e.address_norm or e.ltax_address_norm <> e.address_norm)
  and compare.settled(array['aic'] || d.bureaus, e.division, compare.greatest_seen(e, array['aic'] || d.bureaus));

-- 7 The org code tax holds for an enterprise differs from the one QTS issued; or one
-- registration number has several (valid) org codes.
create view compare.org_code_conflict
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with held as (
    select i.enterprise_key, i.bureau, i.org_code
    from core.identifier i join core.enterprise e using (enterprise_key)
    where i.record_kind = 'tax_registration' and i.org_code_valid and e.org_code is not null
      and i.org_code <> e.org_code
    union
    select coalesce(e.enterprise_key, c.reg_no), 'qts', unnest(c.org_codes)
    from core.identifier_conflict c left join core.enterprise e on e.reg_no = c.reg_no and e.aic_status is not null
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_object_agg(bureau || ':' || org_code, org_code) as codes
    from held group by enterprise_key
)
select 'org_code_conflict'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus,
       jsonb_build_object('qts_issued', e.org_code, 'held', p.codes),
       null::date, compare.greatest_seen(e, array['qts'] || p.bureaus), array['qts'] || p.bureaus
from per p join core.enterprise e using (enterprise_key)
where compare.settled(array['qts'] || p.bureaus, e.division, compare.greatest_seen(e, array['qts'] || p.bureaus));

-- 8 AIC-registered (active) past the deadline with no org code issued.
create view compare.no_org_code
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'no_org_code'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, array['qts']::text[],
       jsonb_build_object('established_on', e.established_on),
       e.established_on + p.org_code_days, e.aic_seen_at, array['aic', 'qts']
from core.enterprise e
cross join compare.params p
where e.aic_status = 'active' and e.org_code is null
  and e.established_on + p.org_code_days < p.as_of
  and compare.settled(array['aic', 'qts'], e.division, e.aic_seen_at);

-- 9 QTS voided the org code, AIC or tax still active.
create view compare.org_code_voided_active
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'org_code_voided_active'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, a.active,
       jsonb_strip_nulls(jsonb_build_object('voided_on', e.qts_voided_on, 'aic', e.aic_status,
                                            'ntax', e.ntax_status, 'ltax', e.ltax_status)),
       e.qts_voided_on, e.qts_seen_at, array['qts'] || a.active
from core.enterprise e
cross join lateral (select array_remove(array[
    case when e.aic_status = 'active' then 'aic' end,
    case when e.ntax_status = 'active' then 'ntax' end,
    case when e.ltax_status = 'active' then 'ltax' end], null) as active) a
where e.qts_status = 'voided' and cardinality(a.active) > 0
  and compare.settled(array['qts'] || a.active, e.division, e.qts_seen_at);

-- 10 Tax abnormal (not lifted), AIC still active.
create view compare.abnormal_taxpayer_active
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'abnormal_taxpayer_active'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, array['aic']::text[],
       jsonb_strip_nulls(jsonb_build_object('ntax_abnormal_since', e.ntax_abnormal_since,
                                            'ltax_abnormal_since', e.ltax_abnormal_since)),
       least(e.ntax_abnormal_since, e.ltax_abnormal_since),
       compare.greatest_seen(e, a.bureaus), array['aic'] || a.bureaus
from core.enterprise e
cross join lateral (select array_remove(array[
    case when e.ntax_abnormal_since is not null then 'ntax' end,
    case when e.ltax_abnormal_since is not null then 'ltax' end], null) as bureaus) a
where e.aic_status = 'active' and (e.ntax_abnormal_since is not null or e.ltax_abnormal_since is not null)
  and compare.settled(array['aic'] || a.bureaus, e.division, compare.greatest_seen(e, a.bureaus));

-- 11 Tax asked AIC to revoke the licence; AIC has not after N days.
create view compare.revocation_request_pending
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'revocation_request_pending'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, array['aic']::text[],
       jsonb_build_object('requested_by', r.bureaus, 'requested_on', r.first_on),
       r.first_on + p.revocation_request_days, r.seen, array['aic'] || r.bureaus
from (
    select q.reg_no, array_agg(distinct q.bureau order by q.bureau) as bureaus, min(q.requested_on) as first_on,
           max(core.seen(q.source_commit_time, q.applied_at)) as seen
    from exchange.tax_revocation_request q cross join compare.params p
    where q.deleted_at is null and q.requested_on + p.revocation_request_days < p.as_of
    group by q.reg_no) r
cross join compare.params p
join core.enterprise e on e.reg_no = r.reg_no and e.aic_status = 'active'
where compare.settled(array['aic'] || r.bureaus, e.division, r.seen);

-- 12 Unlicensed businesses reported by tax: each report, matched or not against the AIC
-- registry by normalized name (and whether the address matches too).
create view compare.unlicensed_business
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
    -- The registered enterprise of that name with the smallest reg_no (an aggregate, so
    -- the name index is used whatever the statistics say).
    select (array_agg(e order by e.reg_no))[1] as e
    from core.enterprise e
    where e.name_norm = n.name_norm and e.aic_status is not null) best on true
left join lateral (select (best.e).enterprise_key, (best.e).org_code, (best.e).reg_no, (best.e).division,
                          (best.e).address_norm) m on true
where u.deleted_at is null
  and compare.settled_everywhere(array['aic'], core.seen(u.source_commit_time, u.applied_at));

-- 13 Registered at one tax bureau but not the other (where both cover the division), or
-- different (valid) taxpayer ids.
create view compare.ntax_ltax_mismatch
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
select 'ntax_ltax_mismatch'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, x.bureaus,
       jsonb_build_object('ntax', compare.visible_taxpayer_id(e.ntax_taxpayer_id),
                          'ltax', compare.visible_taxpayer_id(e.ltax_taxpayer_id),
                          'ntax_registered_on', e.ntax_registered_on, 'ltax_registered_on', e.ltax_registered_on),
       coalesce(e.ntax_registered_on, e.ltax_registered_on) + p.tax_registration_days,
       compare.greatest_seen(e, array['ntax', 'ltax']), array['ntax', 'ltax']
from core.enterprise e
cross join compare.params p
join compare.division_coverage c on c.division = e.division and c.ntax and c.ltax
cross join lateral (select case
    when e.ntax_status is not null and e.ltax_status is null
         and e.ntax_registered_on + p.tax_registration_days < p.as_of then array['ltax']
    when e.ltax_status is not null and e.ntax_status is null
         and e.ltax_registered_on + p.tax_registration_days < p.as_of then array['ntax']
    when e.ntax_status is not null and e.ltax_status is not null
         and e.ntax_taxpayer_id <> e.ltax_taxpayer_id
         and core.is_taxpayer_id(e.ntax_taxpayer_id) and core.is_taxpayer_id(e.ltax_taxpayer_id)
         then array['ntax', 'ltax']
    end as bureaus) x
where (e.ntax_status is not null or e.ltax_status is not null) and x.bureaus is not null
  and compare.settled(array['ntax', 'ltax'], e.division, compare.greatest_seen(e, array['ntax', 'ltax']));

-- 14 An identifier that fails its check: org code, registration number, taxpayer id, or
-- the legal representative's ID-card number.
create view compare.invalid_identifier
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with bad as (
    select i.enterprise_key, i.bureau, f.field,
           case when f.field = 'taxpayer_id' then compare.visible_taxpayer_id(f.value) else f.value end as value
    from core.identifier i
    cross join lateral (values ('reg_no', i.reg_no, i.reg_no_valid),
                               ('org_code', i.org_code, i.org_code_valid),
                               ('taxpayer_id', i.taxpayer_id, i.taxpayer_id_valid)) f(field, value, valid)
    where (i.reg_no_valid is false or i.org_code_valid is false or i.taxpayer_id_valid is false)
      and f.value is not null and not f.valid
    union all
    select e.enterprise_key, 'aic', 'legal_rep_id_no', compare.visible_id(e.legal_rep_id_no)
    from core.enterprise e
    where e.legal_rep_id_no is not null and not core.is_id_card(e.legal_rep_id_no)
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_agg(jsonb_build_object('bureau', bureau, 'field', field, 'value', value) order by bureau, field) as bad
    from bad group by enterprise_key
)
select 'invalid_identifier'::text, e.enterprise_key, e.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus, jsonb_build_object('invalid', p.bad),
       null::date, compare.greatest_seen(e, p.bureaus), p.bureaus
from per p join core.enterprise e using (enterprise_key)
where compare.settled(p.bureaus, e.division, compare.greatest_seen(e, p.bureaus));

-- All rules in one shape.
create view compare.current as
          select * from compare.registered_not_tax_registered
union all select * from compare.aic_closed_tax_active
union all select * from compare.tax_closed_aic_active
union all select * from compare.name_mismatch
union all select * from compare.legal_rep_mismatch
union all select * from compare.address_mismatch
union all select * from compare.org_code_conflict
union all select * from compare.no_org_code
union all select * from compare.org_code_voided_active
union all select * from compare.abnormal_taxpayer_active
union all select * from compare.revocation_request_pending
union all select * from compare.unlicensed_business
union all select * from compare.ntax_ltax_mismatch
union all select * from compare.invalid_identifier;
comment on view compare.current is '当前全部比对结果（14条规则）';

-- Runs and findings with history.
create table compare.run (
    id bigserial primary key,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    as_of date not null,
    open_findings integer,
    new_findings integer,
    resolved_findings integer
);
comment on table compare.run is '比对运行记录';

create table compare.finding (
    id bigserial primary key,
    rule text not null,
    subject text not null,
    enterprise_key text,
    org_code text,
    reg_no text,
    enterprise_name text,
    division text,
    bureaus text[] not null,
    involved text[] not null,
    detail jsonb not null,
    since date,
    first_seen timestamptz not null,
    last_seen timestamptz not null,
    resolved_at timestamptz,
    first_run bigint not null references compare.run (id),
    last_run bigint not null references compare.run (id),
    unique (rule, subject)
);
create index finding_open on compare.finding (rule) where resolved_at is null;
comment on table compare.finding is '比对发现及其历史：首次发现、最近发现、解决时间';
comment on column compare.finding.rule is '规则';
comment on column compare.finding.subject is '比对对象（企业主键，或无照经营报告）';
comment on column compare.finding.bureaus is '需处理的部门';
comment on column compare.finding.involved is '所依据数据的部门';
comment on column compare.finding.detail is '不一致的内容';
comment on column compare.finding.since is '业务上自何日起成立';
comment on column compare.finding.first_seen is '首次发现';
comment on column compare.finding.last_seen is '最近发现';
comment on column compare.finding.resolved_at is '解决时间（空为未解决）';

-- One comparison run: new findings are recorded, seen ones touched, and those no longer
-- found are resolved — but only once every bureau they rest on is complete past the time
-- they were last seen (a lagging source does not resolve anything).
create function compare.refresh() returns bigint
language plpgsql as $$
declare
    run_id bigint;
    n_new integer;
    n_resolved integer;
    n_open integer;
begin
    insert into compare.run (as_of) values (compare.as_of()) returning id into run_id;
    perform set_config('ebis.mask_ids', 'on', true);
    create temp table ebis_current on commit drop as select * from compare.current;
    perform set_config('ebis.mask_ids', 'off', true);
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
    update compare.finding f set resolved_at = now()
    where f.resolved_at is null and f.last_run <> run_id
      and compare.settled(f.involved, f.division, f.last_seen);
    get diagnostics n_resolved = row_count;
    select count(*) into n_open from compare.finding where resolved_at is null;
    update compare.run set finished_at = clock_timestamp(), open_findings = n_open,
        new_findings = n_new, resolved_findings = n_resolved
    where id = run_id;
    return run_id;
end $$;
comment on function compare.refresh() is '执行一次比对：记录新发现、更新已有发现、标记已解决';

-- Open findings by the bureau that must act (work lists).
create view compare.worklist as
select f.id, b.bureau, f.rule, f.subject, f.org_code, f.reg_no, f.enterprise_name, f.division,
       f.detail, f.since, f.first_seen, f.last_seen
from compare.finding f cross join lateral unnest(f.bureaus) b(bureau)
where f.resolved_at is null;
comment on view compare.worklist is '各部门待处理清单（未解决的比对发现）';

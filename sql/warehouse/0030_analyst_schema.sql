-- For the people who use the results (issue 16): a division code table, the rules as a
-- table, each finding's discrepancy as a Chinese sentence, and schema `report`: views an
-- analyst (or a BI tool) can `select *` from as ebis_analyst, masking done in the view,
-- every view and column commented in Chinese with an English gloss.

-- Administrative divisions (GB/T 2260). Seeded with the city's; a DBA loads the rest of
-- the national table into it (code, name, full name) when findings carry other codes.
create table core.division (
    code text primary key check (code ~ '^[0-9]{6}$'),
    name text not null,
    full_name text not null
);
comment on table core.division is '行政区划代码表（GB/T 2260） (administrative division codes)';
comment on column core.division.code is '行政区划代码 (division code, 6 digits)';
comment on column core.division.name is '名称 (name)';
comment on column core.division.full_name is '全称（含上级） (full name, with the city)';
insert into core.division (code, name, full_name) values
    ('150000', '内蒙古自治区', '内蒙古自治区'),
    ('150300', '乌海市', '乌海市'),
    ('150301', '市辖区', '乌海市市辖区'),
    ('150302', '海勃湾区', '乌海市海勃湾区'),
    ('150303', '海南区', '乌海市海南区'),
    ('150304', '乌达区', '乌海市乌达区');

-- The division's full name, or its code when the table does not know it.
create function core.division_name(code text) returns text
language sql stable as $$
    select coalesce((select d.full_name from core.division d where d.code = division_name.code), code)
$$;

-- The 14 rules: what each checks, in plain Chinese, and who acts.
create table compare.rule (
    name text primary key,
    seq integer not null unique,
    label text not null,
    description text not null,
    acting text[] not null,
    english text not null
);
comment on table compare.rule is '比对规则 (the consistency rules)';
comment on column compare.rule.name is '规则代码，与 compare 下同名视图对应 (rule name; the view of the same name)';
comment on column compare.rule.seq is '序号，按规范顺序 (order, as in the specification)';
comment on column compare.rule.label is '规则名称 (Chinese label)';
comment on column compare.rule.description is '核对内容：各部门持有哪些数据、应核对什么 (what to check and which bureau holds which value)';
comment on column compare.rule.acting is '需处理的部门（aic 工商, ntax 国税, ltax 地税, qts 质监） (bureaus that act)';
comment on column compare.rule.english is '英文说明 (English description)';
insert into compare.rule (name, seq, label, description, acting, english) values
    ('registered_not_tax_registered', 1, '已办照未办税务登记（漏征漏管户）',
     '工商登记为存续、成立已超过期限，但在覆盖其所在区划的国税或地税未办理税务登记。工商持有登记状态和成立日期，国税、地税持有税务登记。请核实企业是否应办税务登记。',
     array['ntax', 'ltax'], 'Registered at AIC and active past the deadline, but not tax-registered at a bureau that covers its division'),
    ('aic_closed_tax_active', 2, '工商已注销或吊销、税务仍正常',
     '工商登记已注销或吊销，但国税或地税的税务登记仍为正常。工商持有注销、吊销日期，国税、地税持有税务登记状态。请核实是否应办理税务注销。',
     array['ntax', 'ltax'], 'Deregistered or revoked at AIC, still active at a tax bureau'),
    ('tax_closed_aic_active', 3, '税务已注销、工商仍在营',
     '国税或地税已办理注销，但工商登记仍为存续。国税、地税持有注销日期，工商持有登记状态。请核实企业是否仍在经营。',
     array['aic'], 'Deregistered at a tax bureau, still active at AIC'),
    ('name_mismatch', 4, '名称不一致',
     '同一企业在工商、质监、国税、地税登记的名称不同（已忽略全半角、空格等差异）。各部门各自持有登记名称，以工商登记为准。',
     array['qts', 'ntax', 'ltax'], 'The registered name differs between bureaus after normalization'),
    ('legal_rep_mismatch', 5, '法定代表人不一致',
     '工商登记的法定代表人与国税或地税登记的不同。工商与国税、地税各自持有法定代表人姓名，以工商登记为准。',
     array['ntax', 'ltax'], 'The legal representative differs between AIC and a tax bureau'),
    ('address_mismatch', 6, '地址不一致',
     '工商登记的住所与国税或地税登记的地址不同（已忽略全半角、空格等差异）。以工商登记为准，请核实实际经营地址。',
     array['ntax', 'ltax'], 'The address differs between AIC and a tax bureau after normalization'),
    ('org_code_conflict', 7, '组织机构代码冲突',
     '税务登记的组织机构代码与质监颁发的不同，或同一注册号对应多个代码。质监持有颁发的代码，国税、地税持有登记时填报的代码。',
     array['qts', 'ntax', 'ltax'], 'A tax bureau holds another org code than QTS issued, or a registration number has several codes'),
    ('no_org_code', 8, '未办组织机构代码',
     '工商登记为存续、成立已超过期限，但质监未颁发组织机构代码。工商持有成立日期，质监持有代码颁发记录。',
     array['aic', 'qts'], 'Active at AIC past the deadline with no org code issued by QTS'),
    ('org_code_voided_active', 9, '代码已废置、仍在营',
     '质监已废置组织机构代码，但工商或税务仍为正常。质监持有废置日期，工商、国税、地税持有各自的登记状态。',
     array['aic', 'ntax', 'ltax'], 'Org code voided at QTS while AIC or a tax bureau is active'),
    ('abnormal_taxpayer_active', 10, '非正常户、工商仍在营',
     '国税或地税认定为非正常户且未解除，但工商登记仍为存续。国税、地税持有认定日期，工商持有登记状态。',
     array['aic'], 'A non-compliant (abnormal) taxpayer at a tax bureau, still active at AIC'),
    ('revocation_request_pending', 11, '提请吊销未处理',
     '国税或地税已提请工商吊销营业执照，超过期限仍未吊销。税务持有提请日期，工商持有登记状态。',
     array['aic'], 'A tax bureau asked AIC to revoke the licence; not revoked after the deadline'),
    ('unlicensed_business', 12, '无照经营',
     '国税或地税报告的无照经营户，在工商登记中找不到对应企业（或名称相同而地址不同）。请工商核查。',
     array['aic'], 'A tax bureau reported a business operating without an AIC licence'),
    ('ntax_ltax_mismatch', 13, '国地税登记不一致',
     '企业只在国税或地税一方办理了税务登记，或两方的纳税人识别号不同。国税、地税各自持有税务登记。',
     array['ntax', 'ltax'], 'Registered at one tax bureau but not the other, or with different taxpayer ids'),
    ('invalid_identifier', 14, '代码校验错误',
     '注册号、组织机构代码、纳税人识别号或身份证号码未通过校验位检查。持有该号码的部门请更正。',
     array['aic', 'qts', 'ntax', 'ltax'], 'An identifier fails its check digit');

-- The bureaus' names, and a status in plain words.
create function compare.bureau_label(b text) returns text
language sql immutable as $$
    select case b when 'aic' then '工商' when 'qts' then '质监' when 'ntax' then '国税'
                  when 'ltax' then '地税' else b end
$$;

create function compare.status_label(b text, status text) returns text
language sql immutable as $$
    select case
        when status is null then '无登记'
        when b = 'aic' then case status when 'active' then '存续' when 'deregistered' then '已注销'
                                       when 'revoked' then '已吊销' else status end
        when b = 'qts' then case status when 'issued' then '已颁证' when 'voided' then '已废置' else status end
        else case status when 'active' then '正常' when 'deregistered' then '已注销'
                         when 'abnormal' then '非正常户' else status end
    end
$$;

-- Several bureaus' names, in the order 工商、质监、国税、地税.
create function compare.bureau_labels(bs text[]) returns text
language sql immutable as $$
    select string_agg(compare.bureau_label(b), '、' order by array_position(array['aic', 'qts', 'ntax', 'ltax'], b), b)
    from unnest(bs) b
$$;

create function compare.bureau_labels(bs jsonb) returns text
language sql immutable as $$
    select compare.bureau_labels(array(select jsonb_array_elements_text(coalesce(bs, '[]'))))
$$;

-- What each bureau holds, from a detail keyed by bureau: 「工商：甲；国税：乙」.
create function compare.each_bureau_holds(d jsonb) returns text
language sql immutable as $$
    select string_agg(compare.bureau_label(k) || '：' || v, '；' order by array_position(array['aic', 'qts', 'ntax', 'ltax'], k))
    from jsonb_each_text(d - 'unresolved_rejections') x(k, v)
$$;

-- A finding's discrepancy as a sentence a clerk reads, e.g. 「工商：存续；国税：2006-08-01 已注销」.
-- Values come from the finding's detail (ID numbers there were masked when it was found).
create function compare.describe(rule text, d jsonb) returns text
language sql immutable as $$
    select concat_ws('；',
        case rule
        when 'registered_not_tax_registered' then concat_ws('；',
            '工商：' || coalesce(d->>'established_on' || ' 成立，', '') || '存续',
            compare.bureau_labels(d->'missing_at') || '：未办理税务登记')
        when 'aic_closed_tax_active' then concat_ws('；',
            '工商：' || coalesce(d->>'aic_closed_on' || ' ', '') || compare.status_label('aic', d->>'aic'),
            case when d->>'ntax' is not null then '国税：' || compare.status_label('ntax', d->>'ntax') end,
            case when d->>'ltax' is not null then '地税：' || compare.status_label('ltax', d->>'ltax') end)
        when 'tax_closed_aic_active' then concat_ws('；',
            '工商：' || compare.status_label('aic', d->>'aic'),
            case when d->>'ntax_deregistered_on' is not null then '国税：' || (d->>'ntax_deregistered_on') || ' 已注销' end,
            case when d->>'ltax_deregistered_on' is not null then '地税：' || (d->>'ltax_deregistered_on') || ' 已注销' end)
        when 'name_mismatch' then compare.each_bureau_holds(d)
        when 'legal_rep_mismatch' then compare.each_bureau_holds(d)
        when 'address_mismatch' then compare.each_bureau_holds(d)
        when 'org_code_conflict' then concat_ws('；',
            '质监：' || coalesce('颁发 ' || (d->>'qts_issued'), '未颁发'),
            (select string_agg(compare.bureau_label(split_part(k, ':', 1)) || '：' || v, '；' order by k)
             from jsonb_each_text(coalesce(d->'held', '{}')) x(k, v)))
        when 'no_org_code' then concat_ws('；',
            '工商：' || coalesce(d->>'established_on' || ' 成立，', '') || '存续',
            '质监：未颁发组织机构代码')
        when 'org_code_voided_active' then concat_ws('；',
            '质监：' || coalesce(d->>'voided_on' || ' ', '') || '代码已废置',
            case when d->>'aic' is not null then '工商：' || compare.status_label('aic', d->>'aic') end,
            case when d->>'ntax' is not null then '国税：' || compare.status_label('ntax', d->>'ntax') end,
            case when d->>'ltax' is not null then '地税：' || compare.status_label('ltax', d->>'ltax') end)
        when 'abnormal_taxpayer_active' then concat_ws('；',
            case when d ? 'ntax_abnormal_since' then '国税：' || (d->>'ntax_abnormal_since') || ' 起非正常户' end,
            case when d ? 'ltax_abnormal_since' then '地税：' || (d->>'ltax_abnormal_since') || ' 起非正常户' end,
            '工商：存续')
        when 'revocation_request_pending' then concat_ws('；',
            compare.bureau_labels(d->'requested_by') || '：' || coalesce(d->>'requested_on' || ' ', '') || '提请吊销',
            '工商：未吊销')
        when 'unlicensed_business' then concat_ws('；',
            compare.bureau_label(d->>'reported_by') || '：报告无照经营“' || coalesce(d->>'name', '') || '”'
                || coalesce('，地址 ' || (d->>'address'), ''),
            case when (d->>'matched')::boolean and (d->>'address_matches')::boolean
                     then '工商：有同名登记 ' || (d->>'matched_reg_no')
                 when (d->>'matched')::boolean
                     then '工商：有同名登记 ' || (d->>'matched_reg_no') || '，地址不同'
                 else '工商：无此登记' end)
        when 'ntax_ltax_mismatch' then concat_ws('；',
            '国税：' || case when d->>'ntax' is null then '未登记'
                             else coalesce(d->>'ntax_registered_on' || ' ', '') || '登记，纳税人识别号 ' || (d->>'ntax') end,
            '地税：' || case when d->>'ltax' is null then '未登记'
                             else coalesce(d->>'ltax_registered_on' || ' ', '') || '登记，纳税人识别号 ' || (d->>'ltax') end)
        when 'invalid_identifier' then (
            select string_agg(compare.bureau_label(x->>'bureau') || '：'
                              || case x->>'field' when 'reg_no' then '注册号' when 'org_code' then '组织机构代码'
                                                  when 'taxpayer_id' then '纳税人识别号'
                                                  when 'legal_rep_id_no' then '法定代表人身份证号码'
                                                  else x->>'field' end
                              || ' ' || coalesce(x->>'value', '') || ' 校验错误', '；')
            from jsonb_array_elements(coalesce(d->'invalid', '[]')) x)
        else d::text
        end,
        case when d ? 'unresolved_rejections'
             then '（注意：' || compare.bureau_labels(d->'unresolved_rejections') || '有未处理的拒收记录，本条可能有误）' end)
$$;
comment on function compare.describe(text, jsonb) is '比对发现的不一致内容，写成一句中文 (a finding''s discrepancy as a Chinese sentence)';

create schema report;
comment on schema report is '分析用视图：ebis_analyst 可直接 select *，证件号码在视图中按权限脱敏 (views for analysts and BI tools; ID numbers masked in the view)';

-- The rules.
create view report.rule as
select r.seq, r.name, r.label, r.description, r.acting,
       compare.bureau_labels(r.acting) as acting_label, r.english
from compare.rule r;

-- Every finding, open and resolved, in words.
create view report.finding as
select f.id, f.rule, r.label as rule_label, f.enterprise_key, f.org_code, f.reg_no, f.enterprise_name,
       f.division, core.division_name(f.division) as division_name, f.bureaus,
       compare.bureau_labels(f.bureaus) as bureau_labels,
       compare.describe(f.rule, f.detail) as discrepancy, f.detail, f.since, f.first_seen, f.last_seen,
       f.resolved_at, f.resolved_at is null as open,
       extract(epoch from coalesce(f.resolved_at, now()) - f.first_seen)::float8 / 86400 as days_open
from compare.finding f
join compare.rule r on r.name = f.rule;

-- Open findings by the bureau that must act: what the work lists hold.
create view report.worklist as
select f.id, b.bureau, compare.bureau_label(b.bureau) as bureau_label, f.rule, r.seq as rule_seq,
       r.label as rule_label, f.org_code, f.reg_no, f.enterprise_name, f.division,
       core.division_name(f.division) as division_name, compare.describe(f.rule, f.detail) as discrepancy,
       f.since, f.first_seen, f.last_seen
from compare.finding f
cross join lateral unnest(f.bureaus) b(bureau)
join compare.rule r on r.name = f.rule
where f.resolved_at is null;

-- Findings per rule, bureau and day: opened, resolved, and open at the day's end.
create view report.finding_daily as
with fb as (
    select f.rule, b.bureau, f.first_seen::date as opened, f.resolved_at::date as closed
    from compare.finding f cross join lateral unnest(f.bureaus) b(bureau)
), days as (
    select d::date as day
    from generate_series((select min(first_seen)::date from compare.finding), current_date, interval '1 day') d
)
select d.day, fb.rule, r.label as rule_label, fb.bureau, compare.bureau_label(fb.bureau) as bureau_label,
       count(*) filter (where fb.opened = d.day) as opened,
       count(*) filter (where fb.closed = d.day) as resolved,
       count(*) filter (where fb.closed is null or fb.closed > d.day) as open_at_end
from days d
join fb on fb.opened <= d.day and (fb.closed is null or fb.closed >= d.day)
join compare.rule r on r.name = fb.rule
group by d.day, fb.rule, r.label, fb.bureau;

-- The enterprise base, ID numbers masked.
create view report.enterprise as
select e.enterprise_key, e.org_code, e.reg_no, e.name, e.legal_rep,
       compare.visible_id(e.legal_rep_id_no) as legal_rep_id_no, e.address, e.enterprise_type, e.industry_code,
       e.division, core.division_name(e.division) as division_name, e.established_on,
       e.aic_status, compare.status_label('aic', e.aic_status) as aic_status_label, e.aic_closed_on,
       e.qts_status, compare.status_label('qts', e.qts_status) as qts_status_label, e.qts_issued_on, e.qts_voided_on,
       compare.visible_taxpayer_id(e.ntax_taxpayer_id) as ntax_taxpayer_id, e.ntax_status,
       compare.status_label('ntax', e.ntax_status) as ntax_status_label, e.ntax_registered_on,
       e.ntax_deregistered_on, e.ntax_abnormal_since,
       compare.visible_taxpayer_id(e.ltax_taxpayer_id) as ltax_taxpayer_id, e.ltax_status,
       compare.status_label('ltax', e.ltax_status) as ltax_status_label, e.ltax_registered_on,
       e.ltax_deregistered_on, e.ltax_abnormal_since, e.updated_at
from core.enterprise e;

-- One enterprise as each bureau records it, side by side, and where they differ.
create view report.enterprise_records as
with e as (
    select e.*,
           (select count(distinct v) from unnest(array[e.name_norm, e.qts_name_norm, e.ntax_name_norm, e.ltax_name_norm]) v) > 1 as names_differ,
           (select count(distinct v) from unnest(array[e.legal_rep_norm, e.ntax_legal_rep_norm, e.ltax_legal_rep_norm]) v) > 1 as reps_differ,
           (select count(distinct v) from unnest(array[e.address_norm, e.ntax_address_norm, e.ltax_address_norm]) v) > 1 as addresses_differ,
           (select count(distinct v) from unnest(array[
               case when e.aic_status = 'active' then 'open' when e.aic_status is not null then 'closed' end,
               case when e.qts_status = 'issued' then 'open' when e.qts_status is not null then 'closed' end,
               case when e.ntax_status in ('active', 'abnormal') then 'open' when e.ntax_status is not null then 'closed' end,
               case when e.ltax_status in ('active', 'abnormal') then 'open' when e.ltax_status is not null then 'closed' end]) v) > 1
             as statuses_differ,
           e.ntax_taxpayer_id is not null and e.ltax_taxpayer_id is not null
             and e.ntax_taxpayer_id <> e.ltax_taxpayer_id as taxpayer_ids_differ
    from core.enterprise e
)
select e.enterprise_key, e.org_code, e.reg_no, e.division, core.division_name(e.division) as division_name,
       e.name as aic_name, e.qts_name, e.ntax_name, e.ltax_name,
       e.legal_rep as aic_legal_rep, e.ntax_legal_rep, e.ltax_legal_rep,
       e.address as aic_address, e.ntax_address, e.ltax_address,
       compare.status_label('aic', e.aic_status) as aic_status, compare.status_label('qts', e.qts_status) as qts_status,
       compare.status_label('ntax', e.ntax_status) as ntax_status, compare.status_label('ltax', e.ltax_status) as ltax_status,
       compare.visible_taxpayer_id(e.ntax_taxpayer_id) as ntax_taxpayer_id,
       compare.visible_taxpayer_id(e.ltax_taxpayer_id) as ltax_taxpayer_id,
       array_remove(array[case when e.names_differ then '名称' end, case when e.reps_differ then '法定代表人' end,
                          case when e.addresses_differ then '地址' end, case when e.statuses_differ then '状态' end,
                          case when e.taxpayer_ids_differ then '纳税人识别号' end], null) as differs
from e;

-- Which enterprise an identifier belongs to, record by record (the crosswalk). One
-- branch per identifier, so `where identifier = …` uses that identifier's index.
create view report.crosswalk as
select 'reg_no'::text as identifier_type, '注册号'::text as identifier_label, i.reg_no as identifier,
       i.reg_no_valid as valid, i.enterprise_key, i.bureau, compare.bureau_label(i.bureau) as bureau_label,
       i.record_kind, i.source, i.source_key, i.division, core.division_name(i.division) as division_name
from core.identifier i where i.reg_no is not null
union all
select 'org_code', '组织机构代码', i.org_code, i.org_code_valid, i.enterprise_key, i.bureau,
       compare.bureau_label(i.bureau), i.record_kind, i.source, i.source_key, i.division, core.division_name(i.division)
from core.identifier i where i.org_code is not null
union all
select 'taxpayer_id', '纳税人识别号', compare.visible_taxpayer_id(i.taxpayer_id), i.taxpayer_id_valid,
       i.enterprise_key, i.bureau, compare.bureau_label(i.bureau), i.record_kind, i.source, i.source_key,
       i.division, core.division_name(i.division)
from core.identifier i where i.taxpayer_id is not null;

-- How complete each bureau's data is, per division.
create view report.completeness as
select c.bureau, compare.bureau_label(c.bureau) as bureau_label, c.division,
       core.division_name(c.division) as division_name, c.complete_at,
       extract(epoch from now() - c.complete_at)::float8 as lag_seconds
from compare.completeness c;

-- Each exchange table, every column but the raw source row, ID numbers masked.
do $$
declare
    t record;
begin
    for t in select c.table_name,
                    string_agg(case c.column_name
                                   when 'legal_rep_id_no' then 'compare.visible_id(x.legal_rep_id_no) as legal_rep_id_no'
                                   when 'taxpayer_id' then 'compare.visible_taxpayer_id(x.taxpayer_id) as taxpayer_id'
                                   else 'x.' || quote_ident(c.column_name) end,
                               ', ' order by c.ordinal_position) as cols
             from information_schema.columns c
             where c.table_schema = 'exchange' and c.column_name <> 'raw_row'
               and c.table_name in (select table_name from information_schema.tables
                                    where table_schema = 'exchange' and table_type = 'BASE TABLE')
             group by c.table_name loop
        execute format('create view report.%I as select %s from exchange.%I x', t.table_name, t.cols, t.table_name);
        execute format('comment on view report.%I is %L', t.table_name,
                       coalesce(obj_description(format('exchange.%I', t.table_name)::regclass, 'pg_class'), t.table_name)
                       || ' (exchange table ' || t.table_name || ', ID numbers masked)');
    end loop;
end $$;

comment on view report.rule is '比对规则：名称、核对内容、需处理的部门 (the 14 rules: label, what to check, who acts)';
comment on view report.finding is '全部比对发现（含已解决），不一致内容写成中文 (every finding, open and resolved, in words)';
comment on view report.worklist is '各部门待处理清单：未解决的发现，每个需处理的部门一行 (open findings, one row per bureau that must act)';
comment on view report.finding_daily is '比对发现按规则、部门、日期统计：新增、解决、日终未解决 (findings per rule, bureau and day)';
comment on view report.enterprise is '企业基础信息，证件号码脱敏 (the enterprise base, ID numbers masked)';
comment on view report.enterprise_records is '同一企业在各部门的登记并列对照，并指出不一致之处 (one enterprise as each bureau records it, side by side)';
comment on view report.crosswalk is '标识对照：每个注册号、组织机构代码、纳税人识别号属于哪个企业、来自哪条记录 (which enterprise and record each identifier belongs to)';
comment on view report.completeness is '各部门数据完整至何时（按区划） (how complete each bureau''s data is, per division)';

-- Column comments: Chinese with an English gloss. Views of exchange tables take their
-- table's Chinese comment; the rest come from this list. A column without one stops the
-- migration, so a later view cannot go undocumented here.
create function pg_temp.gloss(col text) returns text
language sql immutable as $$
    select case col
        when 'id' then '发现编号 (finding id)'
        when 'seq' then '序号 (order)'
        when 'name' then '名称 (name)'
        when 'label' then '名称 (label)'
        when 'description' then '核对内容 (what to check)'
        when 'acting' then '需处理的部门代码 (bureaus that act, codes)'
        when 'acting_label' then '需处理的部门 (bureaus that act)'
        when 'english' then '英文说明 (English description)'
        when 'rule' then '规则代码 (rule name)'
        when 'rule_label' then '规则名称 (rule label)'
        when 'rule_seq' then '规则序号 (rule order)'
        when 'enterprise_key' then '企业主键（组织机构代码，或注册号） (enterprise key)'
        when 'org_code' then '组织机构代码 (organization code)'
        when 'reg_no' then '注册号 (registration number)'
        when 'enterprise_name' then '企业名称 (enterprise name)'
        when 'division' then '行政区划代码 (division code)'
        when 'division_name' then '行政区划 (division name)'
        when 'bureau' then '部门代码（aic 工商, ntax 国税, ltax 地税, qts 质监） (bureau code)'
        when 'bureau_label' then '部门 (bureau)'
        when 'bureaus' then '需处理的部门代码 (bureaus that must act, codes)'
        when 'bureau_labels' then '需处理的部门 (bureaus that must act)'
        when 'discrepancy' then '不一致内容 (the discrepancy, in words)'
        when 'detail' then '不一致内容（JSON） (the discrepancy, as data)'
        when 'since' then '业务上自何日起成立 (business date the condition holds from)'
        when 'first_seen' then '首次发现时间 (first seen)'
        when 'last_seen' then '最近发现时间 (last seen)'
        when 'resolved_at' then '解决时间（空为未解决） (resolved at; empty while open)'
        when 'open' then '是否未解决 (still open)'
        when 'days_open' then '已持续天数（已解决的算到解决时） (days open, until resolved)'
        when 'day' then '日期 (day)'
        when 'opened' then '当日新增 (opened that day)'
        when 'resolved' then '当日解决 (resolved that day)'
        when 'open_at_end' then '日终未解决 (open at the end of the day)'
        when 'legal_rep' then '法定代表人 (legal representative)'
        when 'legal_rep_id_no' then '法定代表人身份证号码（脱敏） (legal representative''s ID number, masked)'
        when 'address' then '住所 (address)'
        when 'enterprise_type' then '企业类型 (enterprise type)'
        when 'industry_code' then '行业代码 (industry code)'
        when 'established_on' then '成立日期 (established on)'
        when 'aic_status' then '工商登记状态 (AIC status)'
        when 'aic_status_label' then '工商登记状态（中文） (AIC status, in words)'
        when 'aic_closed_on' then '工商注销或吊销日期 (closed at AIC on)'
        when 'qts_status' then '组织机构代码状态 (QTS code status)'
        when 'qts_status_label' then '组织机构代码状态（中文） (QTS code status, in words)'
        when 'qts_issued_on' then '代码颁发日期 (code issued on)'
        when 'qts_voided_on' then '代码废置日期 (code voided on)'
        when 'ntax_taxpayer_id' then '国税纳税人识别号（个人的脱敏） (national-tax taxpayer id; personal ones masked)'
        when 'ntax_status' then '国税登记状态 (national-tax status)'
        when 'ntax_status_label' then '国税登记状态（中文） (national-tax status, in words)'
        when 'ntax_registered_on' then '国税登记日期 (registered at national tax on)'
        when 'ntax_deregistered_on' then '国税注销日期 (deregistered at national tax on)'
        when 'ntax_abnormal_since' then '国税非正常户认定日期 (national-tax abnormal since)'
        when 'ltax_taxpayer_id' then '地税纳税人识别号（个人的脱敏） (local-tax taxpayer id; personal ones masked)'
        when 'ltax_status' then '地税登记状态 (local-tax status)'
        when 'ltax_status_label' then '地税登记状态（中文） (local-tax status, in words)'
        when 'ltax_registered_on' then '地税登记日期 (registered at local tax on)'
        when 'ltax_deregistered_on' then '地税注销日期 (deregistered at local tax on)'
        when 'ltax_abnormal_since' then '地税非正常户认定日期 (local-tax abnormal since)'
        when 'updated_at' then '更新时间 (updated at)'
        when 'aic_name' then '工商登记名称 (name at AIC)'
        when 'qts_name' then '质监登记名称 (name at QTS)'
        when 'ntax_name' then '国税登记名称 (name at national tax)'
        when 'ltax_name' then '地税登记名称 (name at local tax)'
        when 'aic_legal_rep' then '工商登记法定代表人 (legal representative at AIC)'
        when 'ntax_legal_rep' then '国税登记法定代表人 (legal representative at national tax)'
        when 'ltax_legal_rep' then '地税登记法定代表人 (legal representative at local tax)'
        when 'aic_address' then '工商登记住所 (address at AIC)'
        when 'ntax_address' then '国税登记地址 (address at national tax)'
        when 'ltax_address' then '地税登记地址 (address at local tax)'
        when 'differs' then '不一致的项目：名称、法定代表人、地址、状态、纳税人识别号 (what differs between bureaus)'
        when 'identifier_type' then '标识类型：reg_no、org_code、taxpayer_id (identifier type)'
        when 'identifier_label' then '标识类型（中文） (identifier type, in words)'
        when 'identifier' then '标识号码（个人纳税人识别号脱敏） (the identifier; personal taxpayer ids masked)'
        when 'valid' then '是否通过校验 (passes its check digit)'
        when 'record_kind' then '记录类别（交换表名） (record kind: the exchange table)'
        when 'source' then '来源名称 (source name)'
        when 'source_key' then '源记录主键 (source record key)'
        when 'complete_at' then '数据完整至（此前的变更均已入库） (complete up to: every change before it is in)'
        when 'lag_seconds' then '延迟秒数 (lag, seconds)'
        when 'subject' then '发现对象（企业主键或报告编号） (what the finding is about)'
        when 'evidence_at' then '所依据数据的最新时间 (newest evidence time)'
        when 'involved' then '所依据的部门 (bureaus whose data it rests on)'
        when 'legal_rep_id_no_masked' then '法定代表人身份证号码（脱敏） (legal representative''s ID number, masked)'
    end
$$;

do $$
declare
    v record;
    c record;
    text_ text;
    english text;
begin
    for v in select n.nspname, k.relname, k.oid
             from pg_class k join pg_namespace n on n.oid = k.relnamespace
             where k.relkind = 'v'
               and (n.nspname = 'report'
                    or (n.nspname = 'compare' and k.relname in (select name from compare.rule))
                    or (n.nspname, k.relname) in (('compare', 'current'), ('compare', 'worklist'),
                                                  ('compare', 'my_worklist'), ('core', 'enterprise_view'))) loop
        for c in select a.attnum, a.attname from pg_attribute a
                 where a.attrelid = v.oid and a.attnum > 0 and not a.attisdropped loop
            text_ := null;
            if v.nspname = 'report' and to_regclass(format('exchange.%I', v.relname)) is not null then
                -- A view of an exchange table: the table's Chinese comment, the name as the gloss.
                select col_description(format('exchange.%I', v.relname)::regclass, a.attnum) into text_
                from pg_attribute a
                where a.attrelid = format('exchange.%I', v.relname)::regclass and a.attname = c.attname;
                if text_ is not null then
                    english := replace(c.attname, '_', ' ');
                    if c.attname in ('legal_rep_id_no', 'taxpayer_id') then
                        text_ := text_ || '（脱敏）';
                        english := english || ', masked';
                    end if;
                    text_ := text_ || ' (' || english || ')';
                end if;
            end if;
            text_ := coalesce(text_, pg_temp.gloss(c.attname));
            if text_ is null then
                raise exception 'no comment for column %.%.%', v.nspname, v.relname, c.attname;
            end if;
            execute format('comment on column %I.%I.%I is %L', v.nspname, v.relname, c.attname, text_);
        end loop;
    end loop;
end $$;

do $$
declare
    r record;
begin
    for r in select name, label, english from compare.rule loop
        execute format('comment on view compare.%I is %L', r.name, '规则：' || r.label || ' (' || r.english || ')');
    end loop;
end $$;
comment on view compare.current is '当前全部比对结果（14 条规则的并集，未入库的） (every rule''s current result, before a run records it)';
comment on view compare.worklist is '各部门待处理清单（未解决的比对发现） (open findings per bureau that must act)';
comment on view core.enterprise_view is '企业基础信息（身份证件号码按权限脱敏） (the enterprise base, ID numbers masked)';

grant usage on schema report to ebis_analyst, ebis_pipeline;
grant select on all tables in schema report to ebis_analyst, ebis_pipeline;
grant select on core.division, compare.rule to ebis_analyst, ebis_pipeline;
grant execute on function core.division_name(text), compare.bureau_label(text), compare.status_label(text, text),
    compare.bureau_labels(jsonb), compare.bureau_labels(text[]), compare.each_bureau_holds(jsonb), compare.describe(text, jsonb) to ebis_analyst, ebis_pipeline;

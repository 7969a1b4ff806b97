-- The exchange tables: one per record kind of SPEC (共享指标体系), 15 in all.
--
-- Each row is the latest state of one source row as mapped to this record kind, keyed by
-- (source, source_key), with its provenance. A row deleted at the source keeps its last
-- values and gets deleted_at, so "deleted at the source" differs from "never seen".
-- The columns and comments must agree with src/indicators.rs (a test checks it).

create schema exchange;
comment on schema exchange is '共享交换库：各部门交换指标的当前数据，按来源与源记录主键一行';

create table exchange.aic_establishment (
    reg_no text,
    name text,
    legal_rep text,
    legal_rep_id_no text,
    address text,
    postcode text,
    phone text,
    licensed_scope text,
    general_scope text,
    industry_code text,
    enterprise_type text,
    established_on date,
    registration_authority text,
    source text not null,
    bureau text not null check (bureau = 'aic'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.aic_establishment is '开业登记信息（工商，状态）';
comment on column exchange.aic_establishment.reg_no is '企业注册号';
comment on column exchange.aic_establishment.name is '企业名称';
comment on column exchange.aic_establishment.legal_rep is '法定代表人';
comment on column exchange.aic_establishment.legal_rep_id_no is '身份证件号码';
comment on column exchange.aic_establishment.address is '住所';
comment on column exchange.aic_establishment.postcode is '邮政编码';
comment on column exchange.aic_establishment.phone is '联系电话';
comment on column exchange.aic_establishment.licensed_scope is '前置许可经营项目';
comment on column exchange.aic_establishment.general_scope is '一般经营项目';
comment on column exchange.aic_establishment.industry_code is '行业代码';
comment on column exchange.aic_establishment.enterprise_type is '企业类型';
comment on column exchange.aic_establishment.established_on is '成立日期';
comment on column exchange.aic_establishment.registration_authority is '登记机关';
select ebis.comment_provenance('exchange.aic_establishment');

create table exchange.aic_amendment (
    reg_no text,
    name text,
    change_item text,
    new_value text,
    approved_on date,
    source text not null,
    bureau text not null check (bureau = 'aic'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.aic_amendment is '变更登记信息（工商，事件）';
comment on column exchange.aic_amendment.reg_no is '企业注册号';
comment on column exchange.aic_amendment.name is '企业名称';
comment on column exchange.aic_amendment.change_item is '变更事项';
comment on column exchange.aic_amendment.new_value is '变更后内容';
comment on column exchange.aic_amendment.approved_on is '核准日期';
select ebis.comment_provenance('exchange.aic_amendment');

create table exchange.aic_deregistration (
    reg_no text,
    name text,
    reason text,
    deregistered_on date,
    authority text,
    source text not null,
    bureau text not null check (bureau = 'aic'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.aic_deregistration is '注销登记信息（工商，状态）';
comment on column exchange.aic_deregistration.reg_no is '企业注册号';
comment on column exchange.aic_deregistration.name is '企业名称';
comment on column exchange.aic_deregistration.reason is '注销事由';
comment on column exchange.aic_deregistration.deregistered_on is '注销日期';
comment on column exchange.aic_deregistration.authority is '注销机关';
select ebis.comment_provenance('exchange.aic_deregistration');

create table exchange.aic_revocation (
    reg_no text,
    name text,
    reason text,
    revoked_on date,
    source text not null,
    bureau text not null check (bureau = 'aic'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.aic_revocation is '吊销营业执照信息（工商，状态）';
comment on column exchange.aic_revocation.reg_no is '企业注册号';
comment on column exchange.aic_revocation.name is '企业名称';
comment on column exchange.aic_revocation.reason is '吊销原因';
comment on column exchange.aic_revocation.revoked_on is '吊销日期';
select ebis.comment_provenance('exchange.aic_revocation');

create table exchange.aic_annual_inspection (
    reg_no text,
    name text,
    inspection_year smallint,
    result text,
    source text not null,
    bureau text not null check (bureau = 'aic'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.aic_annual_inspection is '年检信息（工商，事件）';
comment on column exchange.aic_annual_inspection.reg_no is '企业注册号';
comment on column exchange.aic_annual_inspection.name is '企业名称';
comment on column exchange.aic_annual_inspection.inspection_year is '年检年度';
comment on column exchange.aic_annual_inspection.result is '年检情况';
select ebis.comment_provenance('exchange.aic_annual_inspection');

create table exchange.tax_registration (
    org_code text,
    reg_no text,
    taxpayer_id text,
    taxpayer_name text,
    legal_rep text,
    address text,
    registered_on date,
    tax_authority text,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_registration is '税务登记信息（国税/地税，状态）';
comment on column exchange.tax_registration.org_code is '组织机构代码';
comment on column exchange.tax_registration.reg_no is '企业注册号';
comment on column exchange.tax_registration.taxpayer_id is '纳税人识别号';
comment on column exchange.tax_registration.taxpayer_name is '纳税人名称';
comment on column exchange.tax_registration.legal_rep is '法定代表人';
comment on column exchange.tax_registration.address is '注册地址';
comment on column exchange.tax_registration.registered_on is '税务登记日期';
comment on column exchange.tax_registration.tax_authority is '税务登记机关';
select ebis.comment_provenance('exchange.tax_registration');

create table exchange.tax_deregistration (
    org_code text,
    reg_no text,
    taxpayer_id text,
    taxpayer_name text,
    reason text,
    deregistered_on date,
    authority text,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_deregistration is '注销税务登记信息（国税/地税，状态）';
comment on column exchange.tax_deregistration.org_code is '组织机构代码';
comment on column exchange.tax_deregistration.reg_no is '企业注册号';
comment on column exchange.tax_deregistration.taxpayer_id is '纳税人识别号';
comment on column exchange.tax_deregistration.taxpayer_name is '纳税人名称';
comment on column exchange.tax_deregistration.reason is '注销原因';
comment on column exchange.tax_deregistration.deregistered_on is '注销日期';
comment on column exchange.tax_deregistration.authority is '注销机关';
select ebis.comment_provenance('exchange.tax_deregistration');

create table exchange.tax_certificate_check (
    org_code text,
    reg_no text,
    taxpayer_id text,
    taxpayer_name text,
    checked_on date,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_certificate_check is '税务登记验证、换证信息（国税/地税，事件）';
comment on column exchange.tax_certificate_check.org_code is '组织机构代码';
comment on column exchange.tax_certificate_check.reg_no is '企业注册号';
comment on column exchange.tax_certificate_check.taxpayer_id is '纳税人识别号';
comment on column exchange.tax_certificate_check.taxpayer_name is '纳税人名称';
comment on column exchange.tax_certificate_check.checked_on is '验换证日期';
select ebis.comment_provenance('exchange.tax_certificate_check');

create table exchange.tax_abnormal (
    org_code text,
    reg_no text,
    taxpayer_id text,
    taxpayer_name text,
    identified_on date,
    lifted_on date,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_abnormal is '非正常户信息（国税/地税，状态）';
comment on column exchange.tax_abnormal.org_code is '组织机构代码';
comment on column exchange.tax_abnormal.reg_no is '企业注册号';
comment on column exchange.tax_abnormal.taxpayer_id is '纳税人识别号';
comment on column exchange.tax_abnormal.taxpayer_name is '纳税人名称';
comment on column exchange.tax_abnormal.identified_on is '认定日期';
comment on column exchange.tax_abnormal.lifted_on is '解除日期';
select ebis.comment_provenance('exchange.tax_abnormal');

create table exchange.tax_revocation_request (
    reg_no text,
    name text,
    reason text,
    requested_on date,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_revocation_request is '提请吊销营业执照信息（国税/地税，事件）';
comment on column exchange.tax_revocation_request.reg_no is '企业注册号';
comment on column exchange.tax_revocation_request.name is '企业名称';
comment on column exchange.tax_revocation_request.reason is '提请吊销原因';
comment on column exchange.tax_revocation_request.requested_on is '提请吊销日期';
select ebis.comment_provenance('exchange.tax_revocation_request');

create table exchange.tax_penalty (
    org_code text,
    reg_no text,
    taxpayer_id text,
    taxpayer_name text,
    violation text,
    decision text,
    decided_on date,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_penalty is '行政处罚信息（国税/地税，事件）';
comment on column exchange.tax_penalty.org_code is '组织机构代码';
comment on column exchange.tax_penalty.reg_no is '企业注册号';
comment on column exchange.tax_penalty.taxpayer_id is '纳税人识别号';
comment on column exchange.tax_penalty.taxpayer_name is '纳税人名称';
comment on column exchange.tax_penalty.violation is '违法违章手段';
comment on column exchange.tax_penalty.decision is '行政处罚结果';
comment on column exchange.tax_penalty.decided_on is '行政处罚日期';
select ebis.comment_provenance('exchange.tax_penalty');

create table exchange.tax_unlicensed (
    name text,
    address text,
    source text not null,
    bureau text not null check (bureau in ('ntax', 'ltax')),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.tax_unlicensed is '无照经营企业信息（国税/地税，事件）';
comment on column exchange.tax_unlicensed.name is '企业名称';
comment on column exchange.tax_unlicensed.address is '住所';
select ebis.comment_provenance('exchange.tax_unlicensed');

create table exchange.qts_code_issuance (
    reg_no text,
    org_code text,
    org_name text,
    org_type text,
    issued_on date,
    source text not null,
    bureau text not null check (bureau = 'qts'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.qts_code_issuance is '组织机构代码颁证信息（质监，状态）';
comment on column exchange.qts_code_issuance.reg_no is '企业注册号';
comment on column exchange.qts_code_issuance.org_code is '组织机构代码';
comment on column exchange.qts_code_issuance.org_name is '机构名称';
comment on column exchange.qts_code_issuance.org_type is '机构注册类型';
comment on column exchange.qts_code_issuance.issued_on is '颁证日期';
select ebis.comment_provenance('exchange.qts_code_issuance');

create table exchange.qts_code_change (
    org_code text,
    org_name text,
    change_item text,
    new_value text,
    changed_on date,
    source text not null,
    bureau text not null check (bureau = 'qts'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.qts_code_change is '组织机构代码变更信息（质监，事件）';
comment on column exchange.qts_code_change.org_code is '组织机构代码';
comment on column exchange.qts_code_change.org_name is '机构名称';
comment on column exchange.qts_code_change.change_item is '变更事项';
comment on column exchange.qts_code_change.new_value is '变更内容';
comment on column exchange.qts_code_change.changed_on is '变更日期';
select ebis.comment_provenance('exchange.qts_code_change');

create table exchange.qts_code_voided (
    org_code text,
    org_name text,
    voided_on date,
    source text not null,
    bureau text not null check (bureau = 'qts'),
    division text not null,
    source_key text not null,
    change_position text not null,
    change_version bigint not null,
    source_commit_time timestamptz,
    applied_at timestamptz not null default now(),
    mapping_version text not null,
    raw_row jsonb not null,
    deleted_at timestamptz,
    primary key (source, source_key)
);
comment on table exchange.qts_code_voided is '组织机构代码废置信息（质监，状态）';
comment on column exchange.qts_code_voided.org_code is '组织机构代码';
comment on column exchange.qts_code_voided.org_name is '机构名称';
comment on column exchange.qts_code_voided.voided_on is '废置日期';
select ebis.comment_provenance('exchange.qts_code_voided');

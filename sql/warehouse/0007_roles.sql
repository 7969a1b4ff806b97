-- Roles (严格信息保密): the data serve only authorized departments.
--
--   ebis_pipeline        writes the exchange tables and pipeline state (the account `ebis run` uses)
--   ebis_analyst         reads exchange (no raw rows, ID-card or taxpayer numbers), core and compare
--   ebis_id_reader       may see ID-card numbers unmasked (grant it with care)
--   ebis_reader_<bureau> reads its own bureau's exchange rows and work list
--
-- Roles are cluster-wide and NOLOGIN: grant them to login roles
-- (`grant ebis_analyst to alice`). Creating them is idempotent.

do $$
declare
    r text;
begin
    foreach r in array array['ebis_pipeline', 'ebis_analyst', 'ebis_id_reader', 'ebis_reader_aic',
                             'ebis_reader_ntax', 'ebis_reader_ltax', 'ebis_reader_qts'] loop
        begin
            execute format('create role %I nologin', r);
        exception when duplicate_object or unique_violation then
            null;
        end;
    end loop;
end $$;

-- The pipeline: everything it writes and reads.
grant usage on schema ebis, exchange, core, compare to ebis_pipeline;
grant select, insert, update, delete on all tables in schema ebis, exchange, core, compare to ebis_pipeline;
grant usage on all sequences in schema ebis, compare to ebis_pipeline;
grant execute on all functions in schema core, compare, ebis to ebis_pipeline;
grant create on schema ebis to ebis_pipeline;

-- Analysts: every exchange column but the raw source rows and ID-card numbers.
grant usage on schema exchange, core, compare, ebis to ebis_analyst;
do $$
declare
    t record;
begin
    for t in select c.table_name, string_agg(quote_ident(c.column_name), ', ' order by c.ordinal_position) as cols
             from information_schema.columns c
             where c.table_schema = 'exchange' and c.column_name not in ('raw_row', 'legal_rep_id_no', 'taxpayer_id')
             group by c.table_name loop
        execute format('grant select (%s) on exchange.%I to ebis_analyst', t.cols, t.table_name);
    end loop;
end $$;
grant select (enterprise_key, org_code, reg_no, name, legal_rep, address, enterprise_type, industry_code,
              division, established_on, aic_status, aic_closed_on, qts_status, qts_name, qts_issued_on,
              qts_voided_on, ntax_name, ntax_legal_rep, ntax_address, ntax_registered_on,
              ntax_deregistered_on, ntax_abnormal_since, ntax_status, ltax_name,
              ltax_legal_rep, ltax_address, ltax_registered_on, ltax_deregistered_on, ltax_abnormal_since,
              ltax_status, updated_at)
    on core.enterprise to ebis_analyst;
grant select (record_kind, source, source_key, bureau, division, reg_no, org_code, reg_no_valid,
              org_code_valid, taxpayer_id_valid, enterprise_key) on core.identifier to ebis_analyst;
grant select on core.identifier_conflict to ebis_analyst;
grant select on all tables in schema compare to ebis_analyst;
grant execute on all functions in schema core, compare to ebis_analyst;
grant select on ebis.replication_lag, ebis.coverage to ebis_analyst;

-- The enterprise base with the ID-card number masked for those not entitled.
create view core.enterprise_view as
select e.enterprise_key, e.org_code, e.reg_no, e.name, e.legal_rep,
       compare.visible_id(e.legal_rep_id_no) as legal_rep_id_no, e.address, e.enterprise_type,
       e.industry_code, e.division, e.established_on, e.aic_status, e.aic_closed_on, e.qts_status,
       e.qts_voided_on, compare.visible_taxpayer_id(e.ntax_taxpayer_id) as ntax_taxpayer_id, e.ntax_status,
       compare.visible_taxpayer_id(e.ltax_taxpayer_id) as ltax_taxpayer_id, e.ltax_status
from core.enterprise e;
comment on view core.enterprise_view is '企业基础信息（身份证件号码按权限脱敏）';
grant select on core.enterprise_view to ebis_analyst, ebis_pipeline;

-- Bureau readers: their own record kinds; the tax tables hold both tax bureaus, so rows
-- are filtered by row-level security.
do $$
declare
    t text;
    b text;
    cols text;
begin
    foreach b in array array['aic', 'ntax', 'ltax', 'qts'] loop
        execute format('grant usage on schema exchange, compare to %I', 'ebis_reader_' || b);
        for t in select table_name from information_schema.tables
                 where table_schema = 'exchange'
                   and table_name like case b when 'aic' then 'aic\_%' when 'qts' then 'qts\_%' else 'tax\_%' end loop
            select string_agg(quote_ident(column_name), ', ' order by ordinal_position) into cols
            from information_schema.columns
            where table_schema = 'exchange' and table_name = t and column_name not in ('raw_row', 'legal_rep_id_no', 'taxpayer_id');
            execute format('grant select (%s) on exchange.%I to %I', cols, t, 'ebis_reader_' || b);
        end loop;
    end loop;
    for t in select table_name from information_schema.tables
             where table_schema = 'exchange' and table_name like 'tax\_%' loop
        execute format('alter table exchange.%I enable row level security', t);
        execute format('create policy everything on exchange.%I to ebis_pipeline, ebis_analyst using (true) with check (true)', t);
        execute format('create policy own_bureau_ntax on exchange.%I for select to ebis_reader_ntax using (bureau = ''ntax'')', t);
        execute format('create policy own_bureau_ltax on exchange.%I for select to ebis_reader_ltax using (bureau = ''ltax'')', t);
    end loop;
end $$;

-- A bureau's own work list: the open findings it must act on.
create view compare.my_worklist as
select w.* from compare.worklist w
where pg_has_role(current_user, 'ebis_reader_' || w.bureau, 'member')
   or (select rolsuper from pg_roles where rolname = current_user);
comment on view compare.my_worklist is '本部门待处理清单（按当前用户所属部门角色过滤）';
grant select on compare.my_worklist to ebis_reader_aic, ebis_reader_ntax, ebis_reader_ltax, ebis_reader_qts, ebis_analyst;

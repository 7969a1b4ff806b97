-- The enterprise base is refreshed in place. A refresh deleted every touched enterprise
-- and inserted it again, so each one cost a dead row, a new row and an entry in each of
-- core.enterprise's five indexes, even when nothing the base holds had changed (a phone
-- number, a record re-read by a snapshot) or only a column no index reads had (an
-- address). Measured on a 200,000-enterprise base: re-inserting 50,000 computed rows
-- took 1.0 s, half of it in the indexes (the name index alone 0.28 s), against 0.9 s to
-- compute them; the delete before it 0.15 s more.
--
-- Now the refresh computes the touched enterprises' rows into a temporary table
-- (ebis_refreshed, made by core.refresh_enterprises for the two ways of computing them)
-- and then, in one statement, updates in place the enterprises whose row differs,
-- leaving the others untouched, and inserts the new ones; those no record names any more
-- are deleted. An update
-- that changes no indexed column (an address, a legal representative, a status date)
-- stays on its page as a heap-only tuple and touches no index when the page has room,
-- so the base keeps a fifth of each page free, as the exchange tables do since 0031
-- (pages written from now on, and all of them after a rebuild). updated_at now moves
-- only when the enterprise's row changed. The org code never changes in place: it is
-- the enterprise key itself, so an update cannot collide with another enterprise's.
--
-- A rebuild (core.rebuild_all) starts from an empty base without indexes: its rows still
-- go straight into the base, without comparing.
--
-- The refreshed keys are logged for the incremental comparison only when its next run
-- can be incremental: not when the marker of a full run ('*') is logged already, and as
-- that marker when they are more than an incremental run takes (logging 50,000 keys cost
-- 0.3-0.5 s of a 3-4 s refresh).

alter table core.enterprise set (fillfactor = 80);

-- The two ways of computing the rows (by key for a few, set-wise for many) write into
-- ebis_refreshed instead of core.enterprise; what they compute is unchanged.

create or replace function core.refresh_enterprises_by_key(keys text[]) returns void
language plpgsql set enable_seqscan = off set jit = off as $$
begin
    insert into ebis_refreshed
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

create or replace function core.refresh_enterprises_bulk(keys text[]) returns void
language plpgsql set jit = off set work_mem = '64MB' as $$
begin
    if core.rebuilding() then
        -- A rebuild's refresh sorts every enterprise once: in memory (1M: 180 MB).
        set local work_mem = '256MB';
    end if;
    create temp table ebis_refresh_keys on commit drop as
        select distinct k as key from unnest(keys) k where k is not null;
    analyze ebis_refresh_keys;
    insert into ebis_refreshed
    with ids as (
        select i.* from core.identifier i join ebis_refresh_keys k on i.enterprise_key = k.key
    ), aic as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, a.source, a.reg_no, a.name, a.legal_rep,
               a.legal_rep_id_no, a.address, a.enterprise_type, a.industry_code, a.division, a.established_on,
               a.source_commit_time, a.applied_at
        from ids i join exchange.aic_establishment a on a.source = i.source and a.source_key = i.source_key
        where i.record_kind = 'aic_establishment' and a.deleted_at is null
        order by i.enterprise_key, a.established_on desc nulls last, a.source_key
    ), qts as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, q.source, q.reg_no, q.org_code, q.org_name,
               q.division, q.issued_on, q.source_commit_time, q.applied_at
        from ids i join exchange.qts_code_issuance q on q.source = i.source and q.source_key = i.source_key
        where i.record_kind = 'qts_code_issuance' and q.deleted_at is null
        order by i.enterprise_key, q.issued_on desc nulls last, q.source_key
    ), nt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.source, t.reg_no, t.taxpayer_id,
               t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on, t.source_commit_time, t.applied_at
        from ids i join exchange.tax_registration t on t.source = i.source and t.source_key = i.source_key
        where i.record_kind = 'tax_registration' and t.bureau = 'ntax' and t.deleted_at is null
        order by i.enterprise_key, t.registered_on desc nulls last, t.source_key
    ), lt as (
        select distinct on (i.enterprise_key) i.enterprise_key as key, t.source, t.reg_no, t.taxpayer_id,
               t.taxpayer_name, t.legal_rep, t.address, t.division, t.registered_on, t.source_commit_time, t.applied_at
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

-- The touched enterprises' rows, computed, then written where they differ.
create or replace function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
declare
    upsert text;
begin
    if core.rebuilding() then
        -- A rebuild's base is empty and has no indexes: its rows go straight in, through
        -- a view of the base under the name the computing functions write to (a
        -- million rows would otherwise be written twice, the first time to disk).
        delete from core.enterprise where enterprise_key = any(keys);
        create temp view ebis_refreshed as select * from core.enterprise;
    else
        create temp table ebis_refreshed (like core.enterprise) on commit drop;
    end if;
    if cardinality(keys) <= 5000 then
        perform core.refresh_enterprises_by_key(keys);
    elsif not core.rebuilding()
          and cardinality(keys) < 0.05 * (select greatest(c.reltuples, 0) from pg_class c
                                          where c.oid = 'core.enterprise'::regclass) then
        perform core.refresh_enterprises_probing(keys);
    else
        perform core.refresh_enterprises_scanning(keys);
    end if;
    if core.rebuilding() then
        drop view ebis_refreshed;
    else
        -- Gone: enterprises no record names any more.
        delete from core.enterprise
        where enterprise_key = any(array(select k from unnest(keys) k
                                         except select n.enterprise_key from ebis_refreshed n));
        -- Every column but the key and the time of the last change, compared and set.
        select format('insert into core.enterprise as e select * from ebis_refreshed
                       on conflict (enterprise_key) do update set (%s, updated_at) = (%s, excluded.updated_at)
                       where (%s) is distinct from (%2$s)',
                      string_agg(quote_ident(a.attname), ', ' order by a.attnum),
                      string_agg('excluded.' || quote_ident(a.attname), ', ' order by a.attnum),
                      string_agg('e.' || quote_ident(a.attname), ', ' order by a.attnum))
          into upsert
        from pg_attribute a
        where a.attrelid = 'core.enterprise'::regclass and a.attnum > 0 and not a.attisdropped
          and a.attname not in ('enterprise_key', 'updated_at');
        execute upsert;
        -- Logged for the incremental comparison, unless its next run is full anyway:
        -- the marker '*' is there, or there are more keys than an incremental run takes.
        if not exists (select 1 from compare.changed where enterprise_key = '*') then
            if cardinality(keys) > compare.days('incremental_max_enterprises') then
                insert into compare.changed values ('*') on conflict do nothing;
            else
                insert into compare.changed
                select distinct k from unnest(keys) k where k is not null
                on conflict do nothing;
            end if;
        end if;
        drop table ebis_refreshed;
    end if;
end $$;

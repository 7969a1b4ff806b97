-- The rule org_code_conflict without a per-enterprise subquery. Whether an AIC-registered
-- enterprise's registration number has several codes in force was a lateral subquery
-- counting the number's distinct codes, which PostgreSQL can only run once per row it is
-- joined to. On two warehouses loaded alike from the same simulated 1M-enterprise city,
-- the planner ran it after the join to the identifiers that disagree with the
-- enterprise (37,500 rows, 5.7 s for the rule) on one, and for every enterprise before
-- it on the other (1,000,000 loops, 14.9 s; 12.6 s of a 22.6 s full run's candidates),
-- by its estimate of how many enterprises share a number. As a semi-join ("two of its
-- identifiers with different codes in force exist") the planner has a set-wise plan
-- for a full run (a hashed self-join of the identifiers: 5.7–6.0 s for the rule on the
-- second warehouse, in workers) and index probes for an incremental one (about 50 ms
-- for 1,000 enterprises, as before). The same findings: more than one distinct code is
-- the same as two codes that differ.

create or replace view compare.org_code_conflict
    (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division, bureaus, detail, since, evidence_at, involved) as
with held as (
    select i.enterprise_key, i.bureau, i.org_code
    from core.identifier i join core.enterprise e using (enterprise_key)
    where i.record_kind = 'tax_registration' and i.org_code_valid and e.org_code is not null
      and i.org_code <> e.org_code
    union
    -- (An AIC-registered enterprise's registration number with several codes in force:
    -- two of its identifiers with different valid codes, neither voided.)
    select e.enterprise_key, i.bureau, i.org_code
    from core.enterprise e
    join core.identifier i on i.reg_no = e.reg_no and i.org_code_valid
    where e.aic_status is not null
      and (e.org_code is null or i.org_code <> e.org_code)
      and exists (select 1
                  from core.identifier a
                  join core.identifier b on b.reg_no = a.reg_no and b.org_code <> a.org_code
                  where a.reg_no = e.reg_no and a.org_code_valid and b.org_code_valid
                    and not exists (select 1 from exchange.qts_code_voided v
                                    where v.org_code = a.org_code and v.deleted_at is null)
                    and not exists (select 1 from exchange.qts_code_voided v
                                    where v.org_code = b.org_code and v.deleted_at is null))
), per as (
    select enterprise_key, array_agg(distinct bureau order by bureau) as bureaus,
           jsonb_object_agg(bureau || ':' || org_code, org_code) as codes
    from held group by enterprise_key
)
select 'org_code_conflict'::text, p.enterprise_key, p.enterprise_key, e.org_code, e.reg_no, e.name,
       e.division, p.bureaus,
       jsonb_build_object('qts_issued', e.org_code, 'held', p.codes),
       null::date, compare.greatest_seen(e, array['qts'] || p.bureaus), array['qts'] || p.bureaus
from per p join core.enterprise e on e.enterprise_key = p.enterprise_key
where compare.settled(array['qts'] || p.bureaus, e.division, compare.greatest_seen(e, array['qts'] || p.bureaus));

-- When every code QTS issued for a registration number is voided (a re-issued code voided
-- in its turn), the enterprise is the latest one, not the smallest: a tax bureau that
-- followed the re-issue is on the enterprise's own code, and the void is that code's
-- `org_code_voided_active`, not a conflict.
create or replace function core.issued_code(r text) returns text
language sql stable parallel safe set enable_seqscan = off set jit = off as $$
    select q.org_code from exchange.qts_code_issuance q
    where q.reg_no = r and q.deleted_at is null and core.is_org_code(q.org_code)
    order by core.is_voided(q.org_code), q.issued_on desc nulls last, q.org_code
    limit 1
$$;

-- The enterprise base off the apply path. The exchange tables' triggers no longer resolve
-- and refresh enterprises inside every apply (that work was most of a load's time, and
-- its advisory lock made every source wait for every other): they only queue what a
-- statement touched, one row per statement in core.pending, in the applying transaction.
-- One drainer at a time (core.drain, called by `ebis run` in the background, and by
-- core.settle) takes many queued statements at once and resolves and refreshes them in a
-- few set-wise statements, under the advisory lock no apply takes.
--
-- The base is eventually consistent. core.base_complete records, per source, how far
-- the base is complete: the source's complete_up_to as of the last drain that emptied
-- the queue. compare.completeness is capped by it, so a finding never rests on a record
-- the base has not taken in yet; compare.refresh() settles the queue first.

-- A reference to one exchange record.
create type core.row_ref as (record_kind text, source text, source_key text);

create table core.pending (
    seq bigserial primary key,
    queued_at timestamptz not null default clock_timestamp(),
    -- Identifiers whose records must be re-resolved (inserted, deleted, or moved to
    -- another identifier; and codes voided or restored).
    resolve_reg text[] not null default '{}',
    resolve_org text[] not null default '{}',
    resolve_tax text[] not null default '{}',
    -- Identifiers whose enterprises must be refreshed (a deregistration, a revocation, a
    -- void, an abnormal case: AIC registration numbers, QTS codes, taxpayer ids).
    touch_reg text[] not null default '{}',
    touch_org text[] not null default '{}',
    touch_tax text[] not null default '{}',
    -- Identity records whose descriptive columns changed: their enterprises are refreshed.
    touch_rows core.row_ref[] not null default '{}'
);
comment on table core.pending is '企业基础信息库待处理队列：交换表每条语句影响的标识，由后台合并处理';

create table core.base_complete (
    source text primary key,
    complete_up_to timestamptz,
    drained_at timestamptz not null
);
comment on table core.base_complete is '企业基础信息库完整至（按来源）：已纳入基础库的数据的完整时间';

-- The trigger: what the statement touched, queued. No lock, no lookup, and no row
-- turned into JSON (converting every row, raw row and all, to read three identifiers cost
-- more than the insert itself): the identifier columns the table has are read by name, in
-- one statement built from the trigger's column list.
create or replace function core.on_exchange_change() returns trigger
language plpgsql set jit = off as $$
declare
    relevant text[] := string_to_array(tg_argv[0], ',');
    resolving boolean := tg_table_name in ('aic_establishment', 'qts_code_issuance', 'tax_registration');
    ids text[];
    pick text[];
    moved text;
    changed text;
    r text[];
    o text[];
    t text[];
    refs core.row_ref[] := '{}';
    c text;
begin
    -- For each identifier: the expression reading it, '{}' where the table has none.
    foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
        ids := ids || case when c = any(relevant) then c end;
    end loop;
    if tg_op in ('INSERT', 'DELETE') then
        foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
            pick := pick || case when c = any(relevant)
                then format('array(select distinct x.%1$I from %2$I x where x.%1$I is not null)', c,
                            case when tg_op = 'INSERT' then 'new_rows' else 'old_rows' end)
                else '''{}''::text[]' end;
        end loop;
        execute format('select %s, %s, %s', pick[1], pick[2], pick[3]) into r, o, t;
    else
        select string_agg(format('n.%1$I is distinct from d.%1$I', x), ' or ') into moved
          from unnest(array_remove(ids, null) || array['deleted_at']) x;
        select string_agg(format('n.%1$I is distinct from d.%1$I', x), ' or ') into changed
          from unnest(relevant) x;
        foreach c in array array['reg_no', 'org_code', 'taxpayer_id'] loop
            pick := pick || case when c = any(relevant)
                then format('array(select distinct v from c, unnest(array[c.%1$I, c.%2$I]) v
                                   where (c.moved or not $1) and v is not null)', 'n_' || c, 'o_' || c)
                else '''{}''::text[]' end;
        end loop;
        execute format(
            'with c as (
                 select n.source, n.source_key, (%s) as moved %s
                 from new_rows n join old_rows d on d.source = n.source and d.source_key = n.source_key
                 where %s)
             select %s, %s, %s,
                    array(select row(%L, c.source, c.source_key)::core.row_ref from c where not c.moved and $1)',
            moved,
            (select coalesce(string_agg(format(', n.%1$I as %2$I, d.%1$I as %3$I', x, 'n_' || x, 'o_' || x), ''), '')
               from unnest(array_remove(ids, null)) x),
            changed, pick[1], pick[2], pick[3], tg_table_name)
          into r, o, t, refs using resolving;
    end if;
    if cardinality(r) + cardinality(o) + cardinality(t) + cardinality(refs) = 0 then
        return null;
    end if;
    if resolving then
        insert into core.pending (resolve_reg, resolve_org, resolve_tax, touch_rows)
        values (r, o, t, refs);
    elsif tg_table_name = 'qts_code_voided' then
        -- A code voided (or restored) changes which code its registration number links to.
        insert into core.pending (resolve_org, touch_org) values (o, o);
    else
        insert into core.pending (touch_reg, touch_org, touch_tax)
        values (case when tg_table_name like 'aic\_%' then r else '{}' end,
                case when tg_table_name like 'qts\_%' then o else '{}' end,
                case when tg_table_name like 'tax\_%' then t else '{}' end);
    end if;
    return null;
end $$;

-- The distinct identifiers of one column over some queued statements.
create function core.pending_values(ids bigint[], col text) returns text[]
language plpgsql stable as $$
declare
    out text[];
begin
    execute format('select coalesce(array_agg(distinct x) filter (where x is not null), ''{}'')
                    from core.pending p, unnest(p.%I) x where p.seq = any($1)', col)
       into out using ids;
    return out;
end $$;

-- Names are looked up by equality only (a report's name against the registry's): a hash
-- index serves that for a name of any length, where a B-tree refuses one longer than a
-- third of a page, and the refusal would now stop the drainer instead of one apply.
drop index core.enterprise_name_norm;
create index enterprise_name_norm on core.enterprise using hash (name_norm);

-- Takes up to `max_statements` queued statements (oldest first) and brings the base up
-- to date with them, set-wise. Returns how many it took, or -1 when another drainer is
-- at work (it never waits). When it took every statement it could see, the base is
-- complete up to what each source was complete up to at that moment.
create function core.drain(max_statements integer default 500) returns bigint
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    ids bigint[];
    sources jsonb;
    r text[];
    o text[];
    t text[];
    tr text[];
    tor text[];
    tt text[];
    refs core.row_ref[];
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        return -1;
    end if;
    -- One snapshot for the queue and the sources' completeness: everything applied before
    -- it is queued in it.
    select (select array_agg(seq order by seq)
              from (select seq from core.pending order by seq limit max_statements) p),
           (select coalesce(jsonb_object_agg(source, complete_up_to), '{}') from ebis.source_status)
      into ids, sources;
    if ids is not null then
        r := core.pending_values(ids, 'resolve_reg');
        o := core.pending_values(ids, 'resolve_org');
        t := core.pending_values(ids, 'resolve_tax');
        tr := core.pending_values(ids, 'touch_reg');
        tor := core.pending_values(ids, 'touch_org');
        tt := core.pending_values(ids, 'touch_tax');
        select coalesce(array_agg(distinct x), '{}') into refs
          from core.pending p, unnest(p.touch_rows) x where p.seq = any(ids);
        if cardinality(r) + cardinality(o) + cardinality(t) > 0 then
            perform core.resolve(r, o, t);
        end if;
        if cardinality(tr) + cardinality(tor) + cardinality(tt) + cardinality(refs) > 0 then
            perform core.refresh_enterprises(array(
                select distinct i.enterprise_key from core.identifier i
                where (i.record_kind = 'aic_establishment' and i.reg_no = any(tr))
                   or (i.record_kind = 'qts_code_issuance' and i.org_code = any(tor))
                   or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(tt))
                union
                select i.enterprise_key from core.identifier i
                join unnest(refs) x on i.record_kind = x.record_kind collate "default"
                     and i.source = x.source collate "default"
                     and i.source_key = x.source_key collate "default"));
        end if;
        delete from core.pending where seq = any(ids);
    end if;
    if coalesce(cardinality(ids), 0) < max_statements then
        insert into core.base_complete (source, complete_up_to, drained_at)
        select s.key, (s.value #>> '{}')::timestamptz, now()
        from jsonb_each(sources) s
        on conflict (source) do update
           set complete_up_to = excluded.complete_up_to, drained_at = excluded.drained_at;
    end if;
    return coalesce(cardinality(ids), 0);
end $$;
comment on function core.drain(integer) is '处理企业基础信息库待处理队列中的一批语句（后台运行）';

-- A queued statement the base cannot take in (a value one of its indexes or checks
-- refuses, which the exchange tables do not) would fail every drain and stall the whole
-- base behind it. When a drain fails, the drainer takes the statements one at a time and
-- parks the one that still fails here, with the server's reason: the rest of the queue
-- goes on, and `ebis status` counts what is parked. Its records are missing from
-- the base until the cause is fixed and the statement is queued again
-- (`insert into core.pending (...) select ... from core.pending_parked`) or the base is
-- rebuilt (`core.rebuild()`).
create table core.pending_parked (
    like core.pending,
    parked_at timestamptz not null default now(),
    reason text not null
);
comment on table core.pending_parked is '企业基础信息库无法纳入的语句（附原因），待修复后重新排队';

-- Parks the oldest queued statement with `reason`; its number, or -1 when a drainer is
-- at work (it never waits), or NULL when nothing is queued.
create function core.park_oldest(reason text) returns bigint
language plpgsql as $$
declare
    parked bigint;
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        return -1;
    end if;
    with p as (
        delete from core.pending
        where seq = (select min(seq) from core.pending)
        returning *)
    insert into core.pending_parked
    select p.*, now(), reason from p
    returning seq into parked;
    return parked;
end $$;

-- Drains the whole queue now, waiting for a drainer at work: afterwards the base holds
-- every record applied before the call.
create function core.settle() returns bigint
language plpgsql as $$
declare
    n bigint := 0;
    k bigint;
begin
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    loop
        k := core.drain(2000);
        n := n + greatest(k, 0);
        exit when k < 2000;
    end loop;
    return n;
end $$;
comment on function core.settle() is '立即处理完企业基础信息库待处理队列';

-- Rebuilds the whole base; the queue it makes redundant is emptied with it.
create or replace function core.rebuild() returns bigint
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(hashtext('ebis.core'));
    truncate core.identifier, core.enterprise, core.pending;
    perform core.resolve(
        array(select reg_no from exchange.aic_establishment where deleted_at is null
              union select reg_no from exchange.qts_code_issuance where deleted_at is null
              union select reg_no from exchange.tax_registration where deleted_at is null),
        array(select org_code from exchange.qts_code_issuance where deleted_at is null
              union select org_code from exchange.tax_registration where deleted_at is null),
        array(select taxpayer_id from exchange.tax_registration where deleted_at is null));
    perform core.drain(1);
    return (select count(*) from core.enterprise);
end $$;

-- Completeness as the comparison trusts it: a source's, and no further than the base has
-- taken its records in.
create or replace view compare.completeness as
select c.bureau, c.division,
       max(least(s.complete_up_to, coalesce(b.complete_up_to, '-infinity'))) as complete_at
from ebis.coverage c
join ebis.source_status s on s.source = c.source
left join core.base_complete b on b.source = c.source
group by c.bureau, c.division;

-- The comparison settles the base first.
alter function compare.refresh() rename to refresh_findings;
create function compare.refresh() returns bigint
language plpgsql as $$
begin
    perform core.settle();
    return compare.refresh_findings();
end $$;
comment on function compare.refresh() is '运行一次一致性比对（先处理完企业基础信息库待处理队列）';

grant select, insert, update, delete on core.pending, core.base_complete to ebis_pipeline;
grant usage on sequence core.pending_seq_seq to ebis_pipeline;
grant select on core.base_complete to ebis_analyst;
grant select, insert, update, delete on core.pending_parked to ebis_pipeline;
grant select on core.pending_parked to ebis_analyst;

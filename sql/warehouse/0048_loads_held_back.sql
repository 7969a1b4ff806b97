-- A first load's queued statements wait for the loads to end; other sources' do not.
--
-- While a source's first snapshot runs, each chunk it applies queues its records for the
-- base. Taken in while the load runs, they are a full rebuild of the base (the queue names
-- more than a quarter of the crosswalk), wasted because the rebuild at the load's end
-- repeats it: 80-117 s of a core at 1M enterprises. The drainer of `ebis run` used to wait
-- while a first snapshot ran, 5 minutes at most and then however long, and so did every
-- other source's changes; a comparison's settle rebuilt the base regardless.
--
-- Now each queued statement records the source whose apply queued it (`source`: the
-- apply sets `ebis.source` in its transaction; statements queued otherwise have none), and
-- a drain (`core.drain_prepare`, so the drainer, `core.drain` and `core.settle` alike):
--
-- - leaves the statements of sources still loading (`core.loading_sources()`: state
--   'snapshotting', status written within 2 minutes; a load silent for longer, its
--   process dead, holds nothing back) in the queue, and takes the others;
-- - takes nothing while a load runs if what it could take is worth a rebuild (a source
--   whose load ended while another's goes on: the simultaneous first loads of a new
--   city), so one rebuild after the last load takes every load in;
-- - records the base complete only for the sources it took in whole.
--
-- The loading sources' findings are held back meanwhile anyway: a source is complete only
-- once its first snapshot ended.

alter table core.pending add column source text default nullif(current_setting('ebis.source', true), '');
comment on column core.pending.source is '排队该语句的来源（首次快照进行中的来源的语句待快照结束后再处理）';
alter table core.pending_parked add column source text;
comment on column core.pending_parked.source is '排队该语句的来源';

create function core.loading_sources() returns text[]
language sql stable parallel safe as $$
    select coalesce(array_agg(s.source order by s.source), '{}')
    from ebis.source_status s
    where s.state = 'snapshotting' and s.updated_at > clock_timestamp() - interval '2 minutes'
$$;
comment on function core.loading_sources() is '首次快照进行中的来源（两分钟内仍有写入）';

create or replace function core.drain_prepare(max_statements integer, rebuild_allowed boolean, parallel_min integer,
                                   out taken bigint, out ids bigint[], out sources jsonb, out keys text[])
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    queued bigint;
    loading text[];
    r text[];
    o text[];
    t text[];
    tr text[];
    tor text[];
    tt text[];
    refs core.row_ref[];
    collected text[] := '{}';
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        taken := -1;
        return;
    end if;
    loading := core.loading_sources();
    -- One snapshot for the queue and the sources' completeness: everything applied before
    -- it is queued in it.
    select (select array_agg(p.seq order by p.seq) from core.pending p
             where p.source is null or p.source <> all(loading)),
           (select coalesce(jsonb_object_agg(s.source, s.complete_up_to), '{}') from ebis.source_status s) - loading,
           (select coalesce(sum(cardinality(p.resolve_reg) + cardinality(p.resolve_org) + cardinality(p.resolve_tax)), 0)
              from core.pending p
             where p.source is null or p.source <> all(loading))
      into ids, sources, queued;
    if ids is not null and (cardinality(loading) > 0 or rebuild_allowed) and core.rebuild_pays(queued) then
        -- A load's worth while other loads go on waits: one rebuild after them takes it in.
        if cardinality(loading) = 0 then
            perform core.rebuild_taking(ids, sources);
            taken := cardinality(ids);
        else
            taken := 0;
        end if;
        ids := null;
        sources := null;
        return;
    end if;
    ids := ids[1:max_statements];
    taken := coalesce(cardinality(ids), 0);
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
            if parallel_min is null then
                perform core.resolve(r, o, t);
            else
                -- The resolve's refresh is collected, to be done with the rest.
                create temp table ebis_collected (key text) on commit drop;
                perform set_config('ebis.refresh_collect', 'on', true);
                perform core.resolve(r, o, t);
                perform set_config('ebis.refresh_collect', 'off', true);
                collected := array(select distinct c.key from ebis_collected c);
                drop table ebis_collected;
            end if;
        end if;
        keys := array(
            select i.enterprise_key from core.identifier i
            where (i.record_kind = 'aic_establishment' and i.reg_no = any(tr))
               or (i.record_kind = 'qts_code_issuance' and i.org_code = any(tor))
               or (i.record_kind = 'tax_registration' and i.taxpayer_id = any(tt))
            union
            select i.enterprise_key from core.identifier i
            join unnest(refs) x on i.record_kind = x.record_kind collate "default"
                 and i.source = x.source collate "default"
                 and i.source_key = x.source_key collate "default"
            union
            select unnest(collected)
            union
            select k from core.pending p, unnest(p.refresh_keys) k where p.seq = any(ids));
        if cardinality(keys) >= parallel_min then
            -- The caller refreshes them, then calls core.drain_finish(ids, sources, ...).
            -- What the resolve moved records away from stays queued until then.
            if cardinality(collected) > 0 then
                insert into core.pending (refresh_keys, source) values (collected, null)
                returning array_append(ids, seq) into ids;
            end if;
            return;
        end if;
        if cardinality(keys) > 0 then
            perform core.refresh_enterprises(keys);
        end if;
        delete from core.pending where seq = any(ids);
    end if;
    if taken < max_statements then
        perform core.mark_base_complete(sources);
    end if;
    ids := null;
    sources := null;
    keys := null;
end $$;

-- The statement parked is the oldest one a drain takes (not a loading source's).
create or replace function core.park_oldest(reason text) returns bigint
language plpgsql as $$
declare
    parked bigint;
    loading text[];
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        return -1;
    end if;
    loading := core.loading_sources();
    with p as (
        delete from core.pending
        where seq = (select min(q.seq) from core.pending q where q.source is null or q.source <> all(loading))
        returning *)
    insert into core.pending_parked (seq, queued_at, resolve_reg, resolve_org, resolve_tax, touch_reg,
                                     touch_org, touch_tax, touch_rows, refresh_keys, source, parked_at, reason)
    select p.seq, p.queued_at, p.resolve_reg, p.resolve_org, p.resolve_tax, p.touch_reg,
           p.touch_org, p.touch_tax, p.touch_rows, p.refresh_keys, p.source, now(), reason
    from p
    returning seq into parked;
    return parked;
end $$;

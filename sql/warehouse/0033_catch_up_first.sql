-- A source that catches up a backlog (ebis was stopped, the source was cut off, a bureau
-- ran a batch job) applies full batches one after another; the enterprise base's drainer,
-- running beside it, took about a third of the warehouse's cores from those applies
-- (measured, a binlog catch-up of 200,000 changes on 2 cores: 27-31k changes/s with the
-- drainer taking in each batch as it committed, 38k/s with the drainer waiting, and the
-- base complete after about the same time either way: a drain costs less per
-- enterprise when it takes many at once).
--
-- A source now records since when it has been reading full batches (more is waiting at
-- the source): backlog_since, set by the batch that found more waiting and cleared by
-- the one that drained the source. While a streaming source has it set, the drainer waits,
-- as it does during a first snapshot, but for a minute at most (pipeline::base::
-- DEFER_DURING_CATCH_UP, counted from the oldest queued statement), so the base is never
-- more than that behind a long catch-up. The comparison is unaffected: it settles the
-- queue first, and its completeness is capped by core.base_complete as before.
alter table ebis.source_status add column if not exists backlog_since timestamptz;

comment on column ebis.source_status.backlog_since is
  '自何时起来源有积压（连续读满批次，追赶中）；读空后清空。追赶期间企业基础信息库的后台合并最多等待一分钟';

-- A drain that refreshes many enterprises does it on two connections at once. A drain is
-- one backend's work, so a large one (what queued while the drainer waited for a
-- catch-up, one source transaction of 200,000 rows) used one core of the warehouse while
-- the others idled: the 200,000-change catch-up's last drain took 5.6 s. Now
-- core.drain_prepare takes the queue and resolves what it names as core.drain did, and
-- when the enterprises to refresh (those the statements touched and those the resolve
-- moved records between) are at least `parallel_min`, it commits there and hands them
-- back: the caller (the drainer of `ebis run`, Warehouse::drain_base) refreshes
-- half of them on its connection and half on another at the same time, then
-- core.drain_finish removes the statements taken and records the base complete. The
-- caller holds the base's advisory lock as a session lock from before core.drain_prepare
-- until after core.drain_finish, so no other drain (nor core.settle, nor a rebuild) runs
-- in between. Should it fail or die midway, the statements are still queued and the next
-- drain takes them again: a refresh computes the enterprise from what the warehouse holds
-- and writes only what differs, so doing it twice changes nothing.
-- The enterprises a resolve moved records away from are known only to that resolve (no
-- identifier names them any more), so in a drain that commits its resolve before
-- refreshing, they are queued as a statement of their own (core.pending.refresh_keys),
-- which core.drain_finish removes with the rest: a drain that dies before finishing
-- leaves them queued, and the next drain refreshes them (deletes them, when no record
-- names them any more).
alter table core.pending add column refresh_keys text[] not null default '{}';
comment on column core.pending.refresh_keys is '需刷新的企业键（并行合并中标识归属变化涉及的企业）';
alter table core.pending_parked add column refresh_keys text[] not null default '{}';

create or replace function core.park_oldest(reason text) returns bigint
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
    insert into core.pending_parked (seq, queued_at, resolve_reg, resolve_org, resolve_tax, touch_reg,
                                     touch_org, touch_tax, touch_rows, refresh_keys, parked_at, reason)
    select p.seq, p.queued_at, p.resolve_reg, p.resolve_org, p.resolve_tax, p.touch_reg,
           p.touch_org, p.touch_tax, p.touch_rows, p.refresh_keys, now(), reason
    from p
    returning seq into parked;
    return parked;
end $$;

-- What a resolve would refresh is handed back too: in a drain that refreshes in parallel,
-- core.refresh_enterprises only notes its keys (a transaction-local setting,
-- ebis.refresh_collect); every resolve refreshes as its last step, so nothing reads the
-- base between the resolve and the refresh done afterwards.
alter function core.refresh_enterprises(text[]) rename to refresh_enterprises_now;
create function core.refresh_enterprises(keys text[]) returns void
language plpgsql as $$
begin
    if current_setting('ebis.refresh_collect', true) = 'on' then
        insert into ebis_collected select k from unnest(keys) k where k is not null;
    else
        perform core.refresh_enterprises_now(keys);
    end if;
end $$;
comment on function core.refresh_enterprises(text[]) is '重算企业基础信息（写入有变化的企业；并行合并时先记下待刷新的企业）';
grant execute on function core.refresh_enterprises(text[]) to ebis_pipeline;

create function core.drain_prepare(max_statements integer, rebuild_allowed boolean, parallel_min integer,
                                   out taken bigint, out ids bigint[], out sources jsonb, out keys text[])
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    queued bigint;
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
    -- One snapshot for the queue and the sources' completeness: everything applied before
    -- it is queued in it.
    select (select array_agg(seq order by seq) from core.pending),
           (select coalesce(jsonb_object_agg(source, complete_up_to), '{}') from ebis.source_status),
           (select coalesce(sum(cardinality(resolve_reg) + cardinality(resolve_org) + cardinality(resolve_tax)), 0)
              from core.pending)
      into ids, sources, queued;
    if ids is not null and rebuild_allowed and core.rebuild_pays(queued) then
        perform core.rebuild_taking(ids, sources);
        taken := cardinality(ids);
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
                insert into core.pending (refresh_keys) values (collected)
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
comment on function core.drain_prepare(integer, boolean, integer) is
  '处理企业基础信息库待处理队列中的一批语句；需刷新的企业不少于 parallel_min 时交回调用方并行刷新，再由 core.drain_finish 收尾';
grant execute on function core.drain_prepare(integer, boolean, integer) to ebis_pipeline;

-- The end of a drain whose refresh the caller did: the statements taken leave the queue,
-- and the base is complete up to `sources` when the drain took the whole queue.
create function core.drain_finish(ids bigint[], sources jsonb, whole_queue boolean) returns void
language plpgsql as $$
begin
    if not pg_try_advisory_xact_lock(hashtext('ebis.core')) then
        raise exception 'core.drain_finish runs only under the lock of the drain that took the statements';
    end if;
    delete from core.pending where seq = any(ids);
    if whole_queue then
        perform core.mark_base_complete(sources);
    end if;
end $$;
comment on function core.drain_finish(bigint[], jsonb, boolean) is '并行刷新后的收尾：移出已处理的语句，记录基础库完整时间';
grant execute on function core.drain_finish(bigint[], jsonb, boolean) to ebis_pipeline;

-- core.drain is the same drain on one connection, for core.settle and whoever calls it.
create or replace function core.drain(max_statements integer default 500, rebuild_allowed boolean default true)
returns bigint
language sql as $$
    select taken from core.drain_prepare(max_statements, rebuild_allowed, null)
$$;

-- A load holds the base's queue for as long as its process holds the source, not for 2
-- minutes after its last chunk.
--
-- 0048 counted a source as loading while its state was 'snapshotting' and its status had
-- been written within 2 minutes, since a load whose process died must not hold the other
-- sources' changes back. Status is written once a chunk applies, so a chunk slower than 2
-- minutes (a slow link to the source, a large batch) made a live load look dead: a drain
-- then took its half-done load in, a full rebuild of the base wasted (the rebuild at the
-- load's end repeats it), and a load whose process died held the queue for 2 minutes.
--
-- `ebis run` holds each source's lease (ebis.lease, 0028) while it captures it, renewed in
-- the background every fifth of `lease_ttl` whatever the source is doing, given up on a
-- clean stop, expired `lease_ttl` after its process died. So a source with a lease row is
-- loading while that lease is in force; only a source without one (its status written by
-- something other than `ebis run`) falls back to the 2 minutes.

create or replace function core.loading_sources() returns text[]
language sql stable parallel safe as $$
    select coalesce(array_agg(s.source order by s.source), '{}')
    from ebis.source_status s
    left join ebis.lease l on l.source = s.source
    where s.state = 'snapshotting'
      and case when l.source is not null then l.expires_at > clock_timestamp()
               else s.updated_at > clock_timestamp() - interval '2 minutes' end
$$;
comment on function core.loading_sources() is '首次快照进行中的来源（其进程仍持有租约；无租约的来源以两分钟内仍有写入为准）';

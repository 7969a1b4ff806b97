-- Several `ebis run` processes on one config share the sources through leases held here:
-- one process captures a source while its lease lasts, renewing it every second; the
-- others stand by and take the source over once the lease has expired (its holder died,
-- or lost the warehouse). Each take-over raises the epoch. Every apply transaction first
-- locks its source's lease row (FOR SHARE) and checks holder, epoch and expiry: a holder
-- whose lease expired writes nothing more, and a take-over waits for an apply that is
-- committing — fencing, so two processes never write one source at once.
create table ebis.lease (
    source text primary key,
    holder text not null,
    epoch bigint not null,
    acquired_at timestamptz not null,
    renewed_at timestamptz not null,
    expires_at timestamptz not null
);
comment on table ebis.lease is '来源租约：多个 ebis 进程共享来源，持有者定期续约，过期后由备用进程接管（纪元递增，写入前校验）';
comment on column ebis.lease.holder is '持有进程（主机名:进程号:随机数）';
comment on column ebis.lease.epoch is '纪元：每次接管加一，写入事务据此拒绝失去租约的进程';
comment on column ebis.lease.expires_at is '租约到期时间；正常停止时设为 -infinity，备用进程立即接管';

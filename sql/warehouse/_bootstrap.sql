-- Run by `ebis migrate` before any migration: the schema and the table that record which
-- migrations are applied. Idempotent; not a numbered migration itself.
create schema if not exists ebis;
create table if not exists ebis.migration (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
);
comment on table ebis.migration is '已执行的仓库迁移（版本、文件名、内容校验和）';

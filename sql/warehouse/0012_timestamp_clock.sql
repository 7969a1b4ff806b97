-- Timestamp capture no longer trusts the source's rows for time: versions are stamps of
-- the read (the source's own clock), the mark never passes the source's clock, and each
-- key comparison also reads again the rows whose modified time the mark had passed by.
-- Rows dated ahead of the source's clock are counted, so an operator sees them.
alter table ebis.source_status add column future_rows integer not null default 0;
comment on column ebis.source_status.future_rows is '修改时间晚于源端当前时钟的行数（时间戳方式，最近一次键值比对时）';

IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON)
GO

IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'[DJ_NSRXX]'))
ALTER TABLE [DJ_NSRXX] ENABLE CHANGE_TRACKING
GO

-- The account ebis reads with needs:
--   GRANT SELECT, VIEW CHANGE TRACKING ON [DJ_NSRXX] TO [ebis_reader];
-- Optional: with snapshot isolation allowed, nothing else is needed; ebis reads the
-- version first and the rows after, so a change in between is read again, never lost.

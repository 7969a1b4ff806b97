-- Change Tracking (SQL Server 2008 and later): the server records which rows changed,
-- per committed transaction; ebis reads CHANGETABLE(CHANGES …) from its stored version.
-- CHANGE_RETENTION must outlast the longest time ebis may be stopped: past it, changes
-- are cleaned up and ebis snapshots the source again.
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON)
GO

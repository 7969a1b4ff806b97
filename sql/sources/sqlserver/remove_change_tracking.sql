IF EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'{{table_qualified}}'))
ALTER TABLE {{table}} DISABLE CHANGE_TRACKING
GO

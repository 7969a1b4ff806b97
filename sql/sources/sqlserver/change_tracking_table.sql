IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'{{table_qualified}}'))
ALTER TABLE {{table}} ENABLE CHANGE_TRACKING
GO

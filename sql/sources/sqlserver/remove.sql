IF OBJECT_ID(N'{{trigger_qualified}}', N'TR') IS NOT NULL DROP TRIGGER {{trigger}}
GO

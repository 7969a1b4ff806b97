IF OBJECT_ID(N'dbo.ebis_change', N'U') IS NOT NULL DROP TABLE dbo.ebis_change
GO

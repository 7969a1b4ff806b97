-- Capture of 2 table(s). Changes ebis has not read yet are lost with it: stop
-- `ebis run` first. Change Tracking stays enabled on the database (other applications
-- may use it): ALTER DATABASE CURRENT SET CHANGE_TRACKING = OFF once no table has it.

IF OBJECT_ID(N'[ebis_DJ_NSRXX_capture]', N'TR') IS NOT NULL DROP TRIGGER [ebis_DJ_NSRXX_capture]
GO
IF OBJECT_ID(N'[ZS].[ebis_ZS_JKS_capture]', N'TR') IS NOT NULL DROP TRIGGER [ZS].[ebis_ZS_JKS_capture]
GO
IF OBJECT_ID(N'dbo.ebis_change', N'U') IS NOT NULL DROP TABLE dbo.ebis_change
GO

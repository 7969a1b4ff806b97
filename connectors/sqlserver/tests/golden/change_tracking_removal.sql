-- Capture of 1 table(s). Changes ebis has not read yet are lost with it: stop
-- `ebis run` first. Change Tracking stays enabled on the database (other applications
-- may use it): ALTER DATABASE CURRENT SET CHANGE_TRACKING = OFF once no table has it.

IF EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'[DJ_NSRXX]'))
ALTER TABLE [DJ_NSRXX] DISABLE CHANGE_TRACKING
GO

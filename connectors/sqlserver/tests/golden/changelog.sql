IF OBJECT_ID(N'dbo.ebis_change', N'U') IS NULL
CREATE TABLE dbo.ebis_change (
    seq        BIGINT IDENTITY(1, 1) NOT NULL CONSTRAINT ebis_change_pk PRIMARY KEY,
    table_name NVARCHAR(256)  NOT NULL,
    op         CHAR(1)        NOT NULL,
    k1         NVARCHAR(450)  NULL,
    k2         NVARCHAR(450)  NULL,
    k3         NVARCHAR(450)  NULL,
    k4         NVARCHAR(450)  NULL,
    changed_at DATETIME2(6)   NOT NULL CONSTRAINT ebis_change_at DEFAULT SYSUTCDATETIME()
)
GO

IF OBJECT_ID(N'[ebis_DJ_NSRXX_capture]', N'TR') IS NOT NULL DROP TRIGGER [ebis_DJ_NSRXX_capture]
GO

CREATE TRIGGER [ebis_DJ_NSRXX_capture] ON [DJ_NSRXX] AFTER INSERT, UPDATE, DELETE AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO dbo.ebis_change (table_name, op, k1)
    SELECT N'DJ_NSRXX', 'U', CAST(i.[DJXH] AS NVARCHAR(450)) FROM inserted AS i;
    INSERT INTO dbo.ebis_change (table_name, op, k1)
    SELECT N'DJ_NSRXX', 'D', CAST(d.[DJXH] AS NVARCHAR(450)) FROM deleted AS d
    WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.[DJXH] = d.[DJXH]);
END
GO

IF OBJECT_ID(N'[ZS].[ebis_ZS_JKS_capture]', N'TR') IS NOT NULL DROP TRIGGER [ZS].[ebis_ZS_JKS_capture]
GO

CREATE TRIGGER [ZS].[ebis_ZS_JKS_capture] ON [ZS].[ZS_JKS] AFTER INSERT, UPDATE, DELETE AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO dbo.ebis_change (table_name, op, k1, k2)
    SELECT N'ZS.ZS_JKS', 'U', CAST(i.[DJXH] AS NVARCHAR(450)), CAST(i.[JKSXH] AS NVARCHAR(450)) FROM inserted AS i;
    INSERT INTO dbo.ebis_change (table_name, op, k1, k2)
    SELECT N'ZS.ZS_JKS', 'D', CAST(d.[DJXH] AS NVARCHAR(450)), CAST(d.[JKSXH] AS NVARCHAR(450)) FROM deleted AS d
    WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.[DJXH] = d.[DJXH] AND i.[JKSXH] = d.[JKSXH]);
END
GO

-- The account ebis reads with needs:
--   GRANT SELECT ON [DJ_NSRXX] TO [ebis_reader];
--   GRANT SELECT ON [ZS].[ZS_JKS] TO [ebis_reader];
--   GRANT SELECT ON dbo.ebis_change TO [ebis_reader];
-- With VIEW SERVER STATE it also sees open transactions, so a rolled-back gap settles in
-- seconds instead of waiting for capture.gap_timeout:
--   GRANT VIEW SERVER STATE TO [ebis_reader];  -- (a server-level grant, on its login)
-- capture.purge_every is set: ebis deletes the change rows the warehouse has stored:
--   GRANT DELETE ON dbo.ebis_change TO [ebis_reader];

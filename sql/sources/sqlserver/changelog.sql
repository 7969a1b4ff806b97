-- The ebis change table on SQL Server: one row per captured row change, written by the
-- triggers of each captured table. Keys are logged as text (up to four key columns);
-- ebis reads the current row by key, so a row gone is a delete. The IDENTITY numbers
-- commit out of order under concurrent writers: ebis awaits the gaps (see README).
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

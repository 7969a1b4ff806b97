-- One trigger per captured table logs the key of every inserted, updated and deleted
-- row. An update that changes the key logs a delete of the old key. The trigger runs in
-- the application's transaction: if that rolls back, so does the log row.
IF OBJECT_ID(N'{{trigger_qualified}}', N'TR') IS NOT NULL DROP TRIGGER {{trigger}}
GO
CREATE TRIGGER {{trigger}} ON {{table}} AFTER INSERT, UPDATE, DELETE AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO dbo.ebis_change (table_name, op, {{key_columns}})
    SELECT {{table_literal}}, 'U', {{inserted_keys}} FROM inserted AS i;
    INSERT INTO dbo.ebis_change (table_name, op, {{key_columns}})
    SELECT {{table_literal}}, 'D', {{deleted_keys}} FROM deleted AS d
    WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE {{key_match}});
END
GO

-- One row trigger per captured table logs the key of every inserted, updated and deleted
-- row; an update that changes the key logs a delete of the old key. The trigger runs in
-- the application's transaction: if that rolls back, so does the log row.
CREATE OR REPLACE TRIGGER {{trigger}}
AFTER INSERT OR UPDATE OR DELETE ON {{table}}
FOR EACH ROW
BEGIN
  IF INSERTING OR UPDATING THEN
    INSERT INTO {{change_table}} (SEQ, TABLE_NAME, OP, {{key_columns}})
    VALUES ({{sequence}}.NEXTVAL, {{table_literal}}, 'U', {{new_keys}});
  END IF;
  IF DELETING OR (UPDATING AND ({{key_changed}})) THEN
    INSERT INTO {{change_table}} (SEQ, TABLE_NAME, OP, {{key_columns}})
    VALUES ({{sequence}}.NEXTVAL, {{table_literal}}, 'D', {{old_keys}});
  END IF;
END;
/

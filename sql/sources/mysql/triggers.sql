-- ebis capture triggers for one table. Placeholders are filled by `ebis setup-source`
-- with validated, quoted identifiers. Each statement is a single SQL statement (no
-- DELIMITER needed). An update that changes the key logs a delete of the old key.
DROP TRIGGER IF EXISTS {{trigger_insert}};
CREATE TRIGGER {{trigger_insert}} AFTER INSERT ON {{table}} FOR EACH ROW
  INSERT INTO `ebis_change` (table_name, op, row_key) VALUES ({{table_literal}}, 'I', JSON_ARRAY({{new_key}}));
DROP TRIGGER IF EXISTS {{trigger_update}};
CREATE TRIGGER {{trigger_update}} AFTER UPDATE ON {{table}} FOR EACH ROW
  INSERT INTO `ebis_change` (table_name, op, row_key)
  SELECT {{table_literal}}, 'D', JSON_ARRAY({{old_key}}) FROM DUAL WHERE NOT ({{key_unchanged}})
  UNION ALL SELECT {{table_literal}}, 'U', JSON_ARRAY({{new_key}});
DROP TRIGGER IF EXISTS {{trigger_delete}};
CREATE TRIGGER {{trigger_delete}} AFTER DELETE ON {{table}} FOR EACH ROW
  INSERT INTO `ebis_change` (table_name, op, row_key) VALUES ({{table_literal}}, 'D', JSON_ARRAY({{old_key}}));

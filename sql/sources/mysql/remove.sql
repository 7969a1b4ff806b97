-- Removing ebis capture from one table: its three triggers. Placeholders are filled by
-- `ebis setup-source --remove` with validated, quoted identifiers.
DROP TRIGGER IF EXISTS {{trigger_insert}};
DROP TRIGGER IF EXISTS {{trigger_update}};
DROP TRIGGER IF EXISTS {{trigger_delete}};

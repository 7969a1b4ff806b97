-- ebis's capture trigger on one table. Placeholders are filled by `ebis setup-source`
-- with validated, quoted identifiers and literals.
DROP TRIGGER IF EXISTS ebis_capture ON {{table}};
CREATE TRIGGER ebis_capture AFTER INSERT OR UPDATE OR DELETE ON {{table}}
    FOR EACH ROW EXECUTE PROCEDURE ebis_capture.log_change({{arguments}});

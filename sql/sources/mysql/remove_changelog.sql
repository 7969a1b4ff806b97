-- Removing the change table, once no captured table has triggers left. Changes ebis has
-- not read yet go with it: remove capture only when the source is no longer to be captured
-- (or its checkpoint and warehouse rows are removed too, to capture it anew).
DROP TABLE IF EXISTS `ebis_change`;

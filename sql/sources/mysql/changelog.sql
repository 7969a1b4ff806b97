-- ebis change table for MySQL/MariaDB (changelog capture).
--
-- Triggers on each captured table append one row per row change: the table, the
-- operation and the row's key as a JSON array. ebis reads the keys after its position in
-- sequence order and fetches the current rows; it never writes here. Sequence numbers can
-- commit out of order or be skipped by rollbacks; ebis waits for such gaps and records
-- their fate.
CREATE TABLE IF NOT EXISTS `ebis_change` (
    seq         BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY COMMENT 'change sequence',
    table_name  VARCHAR(128)  NOT NULL COMMENT 'captured table',
    op          CHAR(1)       NOT NULL COMMENT 'I insert, U update, D delete',
    row_key     VARCHAR(2000) NOT NULL COMMENT 'the row key as a JSON array',
    changed_at  TIMESTAMP(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) COMMENT 'statement time',
    KEY ebis_change_at (changed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='ebis change log (written by triggers, read by ebis)';

-- The ebis change table on Oracle, in the application's schema {{owner}}: one row per
-- captured row change, written by each captured table's trigger. Keys are logged as text
-- (up to four key columns) by EBIS_KEY.TXT, in one fixed format whatever the writing
-- session's NLS settings. Sequence numbers are taken inside the writing transaction, so
-- they commit out of order (and a lost cache skips some for good): ebis awaits the gaps
-- (see README). ORDER keeps numbers in order across RAC instances.
DECLARE
  n NUMBER;
BEGIN
  SELECT COUNT(*) INTO n FROM ALL_SEQUENCES
   WHERE SEQUENCE_OWNER = {{owner_literal}} AND SEQUENCE_NAME = 'EBIS_CHANGE_SEQ';
  IF n = 0 THEN
    EXECUTE IMMEDIATE 'CREATE SEQUENCE {{owner_in_literal}}."EBIS_CHANGE_SEQ" START WITH 1 INCREMENT BY 1 CACHE 100 ORDER NOCYCLE';
  END IF;
  SELECT COUNT(*) INTO n FROM ALL_TABLES
   WHERE OWNER = {{owner_literal}} AND TABLE_NAME = 'EBIS_CHANGE';
  IF n = 0 THEN
    EXECUTE IMMEDIATE 'CREATE TABLE {{owner_in_literal}}."EBIS_CHANGE" (
      SEQ        NUMBER(19)     NOT NULL,
      TABLE_NAME VARCHAR2(300)  NOT NULL,
      OP         CHAR(1)        NOT NULL,
      K1         VARCHAR2(1000),
      K2         VARCHAR2(1000),
      K3         VARCHAR2(1000),
      K4         VARCHAR2(1000),
      CHANGED_AT TIMESTAMP(6)   DEFAULT SYS_EXTRACT_UTC(SYSTIMESTAMP) NOT NULL,
      CONSTRAINT "EBIS_CHANGE_PK" PRIMARY KEY (SEQ))';
  END IF;
END;
/
-- Key text in one format: numbers with a point, dates as YYYY-MM-DD HH24:MI:SS.
CREATE OR REPLACE PACKAGE {{owner}}."EBIS_KEY" AS
  FUNCTION TXT(v IN NUMBER) RETURN VARCHAR2;
  FUNCTION TXT(v IN DATE) RETURN VARCHAR2;
  FUNCTION TXT(v IN VARCHAR2) RETURN VARCHAR2;
END;
/
CREATE OR REPLACE PACKAGE BODY {{owner}}."EBIS_KEY" AS
  FUNCTION TXT(v IN NUMBER) RETURN VARCHAR2 IS
  BEGIN
    RETURN TO_CHAR(v, 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,''');
  END;
  FUNCTION TXT(v IN DATE) RETURN VARCHAR2 IS
  BEGIN
    RETURN TO_CHAR(v, 'YYYY-MM-DD HH24:MI:SS');
  END;
  FUNCTION TXT(v IN VARCHAR2) RETURN VARCHAR2 IS
  BEGIN
    RETURN v;
  END;
END;
/

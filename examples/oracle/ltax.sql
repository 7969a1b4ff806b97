-- A local tax bureau's CTAIS-era registration tables as an Oracle database keeps them:
-- schema DJDB, a ZHS16GBK database (VARCHAR2 holds GBK), DATE columns (with a time of
-- day, as Oracle's DATE always has), NUMBER keys, and a GXSJ stamp the application sets
-- with SYSDATE. For trying the Oracle connector; the mappings beside it read these
-- tables. Run as a DBA in SQL*Plus or SQL Developer.
CREATE USER DJDB IDENTIFIED BY "change_me" QUOTA UNLIMITED ON USERS;
CREATE TABLE DJDB.DJ_JL_JBSJ (
    JSJDM       NUMBER(12)     NOT NULL,                 -- 计算机代码
    SWDJZH      VARCHAR2(20)   NOT NULL,                 -- 税务登记证号
    NSRMC       VARCHAR2(200)  NOT NULL,                 -- 纳税人名称
    ZZJGDM      CHAR(9),                                 -- 组织机构代码
    YYZZH       VARCHAR2(20),                            -- 营业执照号
    FDDBR       VARCHAR2(50),                            -- 法定代表人
    ZCDZ        VARCHAR2(200),                           -- 注册地址
    KYDJRQ      DATE,                                    -- 开业登记日期
    SWJGZZJGDM  CHAR(11),                                -- 主管税务机关
    NSRZT       CHAR(2)        DEFAULT '03' NOT NULL,    -- 纳税人状态
    ZCZBJE      NUMBER(16, 2),                           -- 注册资本金额
    GXSJ        DATE           DEFAULT SYSDATE NOT NULL, -- 更新时间
    CONSTRAINT PK_DJ_JL_JBSJ PRIMARY KEY (JSJDM)
);
CREATE INDEX DJDB.IX_DJ_JL_JBSJ_GXSJ ON DJDB.DJ_JL_JBSJ (GXSJ, JSJDM);
CREATE TABLE DJDB.DJ_JL_ZXDJ (
    ZXXH        NUMBER(12)     NOT NULL,                 -- 注销序号
    JSJDM       NUMBER(12)     NOT NULL,
    SWDJZH      VARCHAR2(20)   NOT NULL,
    NSRMC       VARCHAR2(200)  NOT NULL,
    ZXYY        NVARCHAR2(200),                          -- 注销原因
    ZXRQ        DATE,                                    -- 注销日期
    ZXSWJG      CHAR(11),                                -- 注销税务机关
    CONSTRAINT PK_DJ_JL_ZXDJ PRIMARY KEY (ZXXH)
) ROWDEPENDENCIES;
-- DJ_JL_ZXDJ has no modified column: in timestamp mode its mapping reads ORA_ROWSCN,
-- kept per row because the table was created with ROWDEPENDENCIES.

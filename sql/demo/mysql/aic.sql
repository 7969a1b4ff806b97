-- 工商 (AIC) reference schema, GWSSI-style naming (DOMAIN.md §4), for MySQL/MariaDB.
-- Tables are GBK like the era's Oracle ZHS16GBK databases; ebis reads them through a
-- UTF-8 connection, so the server converts. Cancellation and revocation are dates and a
-- status on E_BASEINFO (separate cancel/revoke tables were not found in public code).

CREATE TABLE E_BASEINFO (
    PRIPID       BIGINT       NOT NULL PRIMARY KEY COMMENT '主体身份代码',
    REGNO        VARCHAR(20)  NOT NULL COMMENT '注册号',
    ORIREGNO     VARCHAR(20)  NULL COMMENT '原注册号',
    ENTNAME      VARCHAR(200) NOT NULL COMMENT '企业名称',
    ENTTYPE      CHAR(4)      NULL COMMENT '企业类型',
    INDUSTRYPHY  CHAR(1)      NULL COMMENT '行业门类',
    INDUSTRYCO   CHAR(4)      NULL COMMENT '行业代码',
    NAME         VARCHAR(50)  NULL COMMENT '法定代表人',
    CERTYPE      CHAR(1)      NULL COMMENT '证件类型',
    CERNO        VARCHAR(20)  NULL COMMENT '证件号码',
    DOM          VARCHAR(200) NULL COMMENT '住所',
    DOMDISTRICT  CHAR(6)      NULL COMMENT '住所所在行政区划',
    POSTALCODE   CHAR(6)      NULL COMMENT '邮政编码',
    TEL          VARCHAR(30)  NULL COMMENT '联系电话',
    ABUITEM      VARCHAR(500) NULL COMMENT '前置许可经营项目',
    CBUITEM      VARCHAR(1000) NULL COMMENT '一般经营项目',
    REGCAP       DECIMAL(18,4) NULL COMMENT '注册资本(万元)',
    ESTDATE      DATE         NULL COMMENT '成立日期',
    APPRDATE     DATE         NULL COMMENT '核准日期',
    REGORG       CHAR(6)      NULL COMMENT '登记机关',
    REGSTATE     CHAR(1)      NOT NULL DEFAULT '1' COMMENT '登记状态 1在营 2吊销 3注销 4迁出',
    CANDATE      DATE         NULL COMMENT '注销日期',
    CANREA       VARCHAR(200) NULL COMMENT '注销原因',
    REVDATE      DATE         NULL COMMENT '吊销日期',
    REVREA       VARCHAR(200) NULL COMMENT '吊销原因',
    LAST_UPDATED DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '最后修改时间',
    KEY E_BASEINFO_REGNO (REGNO),
    KEY E_BASEINFO_UPD (LAST_UPDATED, PRIPID)
) ENGINE=InnoDB DEFAULT CHARSET=gbk COMMENT='企业基本信息';

CREATE TABLE E_ALTER_RECODER (
    ALT_ID       BIGINT       NOT NULL PRIMARY KEY COMMENT '变更记录ID',
    PRIPID       BIGINT       NOT NULL COMMENT '主体身份代码',
    ALTITEM      VARCHAR(50)  NOT NULL COMMENT '变更事项',
    ALTBE        VARCHAR(1000) NULL COMMENT '变更前内容',
    ALTAF        VARCHAR(1000) NULL COMMENT '变更后内容',
    ALTDATE      DATE         NULL COMMENT '核准日期',
    LAST_UPDATED DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '最后修改时间',
    KEY E_ALTER_RECODER_PRIPID (PRIPID),
    KEY E_ALTER_RECODER_UPD (LAST_UPDATED, ALT_ID)
) ENGINE=InnoDB DEFAULT CHARSET=gbk COMMENT='变更登记记录';

CREATE TABLE E_NJ_BASEINFO (
    NJ_ID        BIGINT       NOT NULL PRIMARY KEY COMMENT '年检记录ID',
    PRIPID       BIGINT       NOT NULL COMMENT '主体身份代码',
    NJND         CHAR(4)      NOT NULL COMMENT '年检年度',
    NJJG         CHAR(1)      NULL COMMENT '年检结果 1合格 2基本合格 3不合格 4未年检',
    NJRQ         DATE         NULL COMMENT '年检日期',
    LAST_UPDATED DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '最后修改时间',
    UNIQUE KEY E_NJ_PRIPID_NJND (PRIPID, NJND),
    KEY E_NJ_UPD (LAST_UPDATED, NJ_ID)
) ENGINE=InnoDB DEFAULT CHARSET=gbk COMMENT='企业年检信息';

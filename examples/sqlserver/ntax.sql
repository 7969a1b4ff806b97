-- A national tax bureau's registration tables as a SQL Server 2012 database keeps them:
-- legacy VARCHAR under the Chinese_PRC_CI_AS collation (code page 936, GBK), DATETIME
-- modification stamps, BIGINT registration numbers. For trying the SQL Server connector;
-- the mappings beside it read these tables.
CREATE TABLE dbo.DJ_NSRXX (
    DJXH        BIGINT        NOT NULL CONSTRAINT PK_DJ_NSRXX PRIMARY KEY, -- 登记序号
    NSRSBH      VARCHAR(20)   COLLATE Chinese_PRC_CI_AS NOT NULL,         -- 纳税人识别号
    NSRMC       VARCHAR(200)  COLLATE Chinese_PRC_CI_AS NOT NULL,         -- 纳税人名称
    ZZJG_DM     VARCHAR(12)   COLLATE Chinese_PRC_CI_AS NULL,             -- 组织机构代码
    GSDJ_ZCH    VARCHAR(20)   COLLATE Chinese_PRC_CI_AS NULL,             -- 工商注册号
    FDDBRXM     VARCHAR(50)   COLLATE Chinese_PRC_CI_AS NULL,             -- 法定代表人姓名
    ZCDZ        VARCHAR(200)  COLLATE Chinese_PRC_CI_AS NULL,             -- 注册地址
    DJRQ        DATETIME      NULL,                                       -- 登记日期
    ZGSWJ_DM    CHAR(11)      NULL,                                       -- 主管税务机关
    NSRZT_DM    CHAR(2)       NOT NULL CONSTRAINT DF_DJ_NSRXX_ZT DEFAULT '03',
    XGRQ        DATETIME      NOT NULL CONSTRAINT DF_DJ_NSRXX_XGRQ DEFAULT GETDATE() -- 修改日期
);
GO
CREATE INDEX IX_DJ_NSRXX_XGRQ ON dbo.DJ_NSRXX (XGRQ, DJXH);
GO
CREATE TABLE dbo.DJ_ZXDJ (
    ZXDJ_ID     BIGINT        NOT NULL CONSTRAINT PK_DJ_ZXDJ PRIMARY KEY, -- 注销登记ID
    DJXH        BIGINT        NOT NULL,                                   -- 登记序号
    NSRSBH      VARCHAR(20)   COLLATE Chinese_PRC_CI_AS NOT NULL,
    NSRMC       VARCHAR(200)  COLLATE Chinese_PRC_CI_AS NOT NULL,
    ZXYY        NVARCHAR(200) NULL,                                       -- 注销原因
    ZXRQ        DATETIME      NULL,                                       -- 注销日期
    ZXJG_DM     CHAR(11)      NULL,                                       -- 注销机关
    XGRQ        DATETIME      NOT NULL CONSTRAINT DF_DJ_ZXDJ_XGRQ DEFAULT GETDATE()
);
GO
CREATE INDEX IX_DJ_ZXDJ_XGRQ ON dbo.DJ_ZXDJ (XGRQ, ZXDJ_ID);
GO

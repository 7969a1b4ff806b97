-- 质监 (QTS) reference schema: the organization-code office's T_JGDM (DOMAIN.md §4) with
-- change and void records, for MySQL/MariaDB, UTF-8. ZT: 1 有效, 2 作废.

CREATE TABLE T_JGDM (
    JGDM         CHAR(9)      NOT NULL PRIMARY KEY COMMENT '组织机构代码',
    JGMC         VARCHAR(200) NOT NULL COMMENT '机构名称',
    JGLX         CHAR(1)      NULL COMMENT '机构类型',
    FDDBR        VARCHAR(50)  NULL COMMENT '法定代表人',
    ZJHM         VARCHAR(20)  NULL COMMENT '证件号码',
    JGDZ         VARCHAR(200) NULL COMMENT '机构地址',
    XZQH         CHAR(6)      NULL COMMENT '行政区划',
    ZCH          VARCHAR(20)  NULL COMMENT '工商注册号',
    BZRQ         DATE         NULL COMMENT '颁证日期',
    ZFRQ         DATE         NULL COMMENT '作废日期',
    ZT           CHAR(1)      NOT NULL DEFAULT '1' COMMENT '状态 1有效 2作废',
    GXSJ         DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '更新时间',
    KEY T_JGDM_ZCH (ZCH),
    KEY T_JGDM_GXSJ (GXSJ, JGDM)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='组织机构代码';

CREATE TABLE T_JGDM_BG (
    BGXH         BIGINT       NOT NULL PRIMARY KEY COMMENT '变更序号',
    JGDM         CHAR(9)      NOT NULL COMMENT '组织机构代码',
    JGMC         VARCHAR(200) NOT NULL COMMENT '机构名称',
    BGSX         VARCHAR(50)  NOT NULL COMMENT '变更事项',
    BGNR         VARCHAR(500) NULL COMMENT '变更内容',
    BGRQ         DATE         NULL COMMENT '变更日期',
    GXSJ         DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '更新时间',
    KEY T_JGDM_BG_GXSJ (GXSJ, BGXH)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='组织机构代码变更记录';

CREATE TABLE T_JGDM_ZF (
    ZFXH         BIGINT       NOT NULL PRIMARY KEY COMMENT '废置序号',
    JGDM         CHAR(9)      NOT NULL COMMENT '组织机构代码',
    JGMC         VARCHAR(200) NOT NULL COMMENT '机构名称',
    ZFRQ         DATE         NOT NULL COMMENT '废置日期',
    ZFYY         VARCHAR(200) NULL COMMENT '废置原因',
    GXSJ         DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6) COMMENT '更新时间',
    KEY T_JGDM_ZF_GXSJ (GXSJ, ZFXH)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='组织机构代码废置记录';

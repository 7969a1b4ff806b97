//! The exchange indicator system (共享指标体系): the 15 record kinds of SPEC and their fields.
//!
//! This is the one Rust description of the canonical model. Mappings are checked against it,
//! the warehouse writer orders its columns by it, and a test checks that the migrated
//! `exchange` tables agree with it column for column, comment for comment. It holds no I/O.

/// Which bureaus may feed a record kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// 工商 only.
    Aic,
    /// 国税 or 地税 (the table carries the bureau as a column).
    Tax,
    /// 质监 only.
    Qts,
}

impl Owner {
    /// The bureau codes that may feed it, for messages.
    pub fn bureaus(self) -> &'static str {
        match self {
            Owner::Aic => "aic",
            Owner::Tax => "ntax or ltax",
            Owner::Qts => "qts",
        }
    }
}

/// Whether a record kind is current state or a list of events (SPEC: registrations are
/// state, amendments/inspections/penalties are event lists). Both are keyed by
/// (source, source key); the difference matters to the comparison rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One current row per source key.
    State,
    /// One row per source event row.
    Events,
}

/// The warehouse type of a canonical field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `text`.
    Text,
    /// `date`.
    Date,
    /// `smallint` holding a year.
    Year,
}

impl FieldType {
    /// The PostgreSQL type name as `information_schema.columns.data_type` shows it.
    pub fn sql_type(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Date => "date",
            FieldType::Year => "smallint",
        }
    }
}

/// One canonical field of a record kind.
#[derive(Debug)]
pub struct Field {
    /// Column name in the warehouse (SPEC's English name).
    pub name: &'static str,
    /// Chinese label from the notice (the column comment).
    pub label: &'static str,
    /// Warehouse type.
    pub ty: FieldType,
    /// True when every mapping of this kind must fill it (the identifier that joins the
    /// record to an enterprise).
    pub required: bool,
}

/// One record kind: a warehouse table in schema `exchange`.
#[derive(Debug)]
pub struct RecordKind {
    /// Table name (`aic_establishment`, …).
    pub name: &'static str,
    /// Chinese label (the table comment).
    pub label: &'static str,
    /// Which bureaus feed it.
    pub owner: Owner,
    /// State or events.
    pub shape: Shape,
    /// Canonical fields in table order.
    pub fields: &'static [Field],
}

impl RecordKind {
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// True when a source of this bureau may feed the record kind.
    pub fn accepts_bureau(&self, bureau: Bureau) -> bool {
        match self.owner {
            Owner::Aic => bureau == Bureau::Aic,
            Owner::Tax => matches!(bureau, Bureau::Ntax | Bureau::Ltax),
            Owner::Qts => bureau == Bureau::Qts,
        }
    }
}

const fn text(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        ty: FieldType::Text,
        required: false,
    }
}

const fn key(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        ty: FieldType::Text,
        required: true,
    }
}

const fn date(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        ty: FieldType::Date,
        required: false,
    }
}

const REG_NO: Field = key("reg_no", "企业注册号");
const NAME: Field = text("name", "企业名称");
const TAX_ORG_CODE: Field = text("org_code", "组织机构代码");
const TAX_REG_NO: Field = text("reg_no", "企业注册号");
const TAXPAYER_ID: Field = key("taxpayer_id", "纳税人识别号");
const TAXPAYER_NAME: Field = text("taxpayer_name", "纳税人名称");

/// All 15 record kinds, in SPEC order.
pub static RECORD_KINDS: &[RecordKind] = &[
    RecordKind {
        name: "aic_establishment",
        label: "开业登记信息",
        owner: Owner::Aic,
        shape: Shape::State,
        fields: &[
            REG_NO,
            NAME,
            text("legal_rep", "法定代表人"),
            text("legal_rep_id_no", "身份证件号码"),
            text("address", "住所"),
            text("postcode", "邮政编码"),
            text("phone", "联系电话"),
            text("licensed_scope", "前置许可经营项目"),
            text("general_scope", "一般经营项目"),
            text("industry_code", "行业代码"),
            text("enterprise_type", "企业类型"),
            date("established_on", "成立日期"),
            text("registration_authority", "登记机关"),
        ],
    },
    RecordKind {
        name: "aic_amendment",
        label: "变更登记信息",
        owner: Owner::Aic,
        shape: Shape::Events,
        fields: &[
            REG_NO,
            NAME,
            text("change_item", "变更事项"),
            text("new_value", "变更后内容"),
            date("approved_on", "核准日期"),
        ],
    },
    RecordKind {
        name: "aic_deregistration",
        label: "注销登记信息",
        owner: Owner::Aic,
        shape: Shape::State,
        fields: &[
            REG_NO,
            NAME,
            text("reason", "注销事由"),
            date("deregistered_on", "注销日期"),
            text("authority", "注销机关"),
        ],
    },
    RecordKind {
        name: "aic_revocation",
        label: "吊销营业执照信息",
        owner: Owner::Aic,
        shape: Shape::State,
        fields: &[
            REG_NO,
            NAME,
            text("reason", "吊销原因"),
            date("revoked_on", "吊销日期"),
        ],
    },
    RecordKind {
        name: "aic_annual_inspection",
        label: "年检信息",
        owner: Owner::Aic,
        shape: Shape::Events,
        fields: &[
            REG_NO,
            NAME,
            Field {
                name: "inspection_year",
                label: "年检年度",
                ty: FieldType::Year,
                required: false,
            },
            text("result", "年检情况"),
        ],
    },
    RecordKind {
        name: "tax_registration",
        label: "税务登记信息",
        owner: Owner::Tax,
        shape: Shape::State,
        fields: &[
            TAX_ORG_CODE,
            TAX_REG_NO,
            TAXPAYER_ID,
            TAXPAYER_NAME,
            text("legal_rep", "法定代表人"),
            text("address", "注册地址"),
            date("registered_on", "税务登记日期"),
            text("tax_authority", "税务登记机关"),
        ],
    },
    RecordKind {
        name: "tax_deregistration",
        label: "注销税务登记信息",
        owner: Owner::Tax,
        shape: Shape::State,
        fields: &[
            TAX_ORG_CODE,
            TAX_REG_NO,
            TAXPAYER_ID,
            TAXPAYER_NAME,
            text("reason", "注销原因"),
            date("deregistered_on", "注销日期"),
            text("authority", "注销机关"),
        ],
    },
    RecordKind {
        name: "tax_certificate_check",
        label: "税务登记验证、换证信息",
        owner: Owner::Tax,
        shape: Shape::Events,
        fields: &[
            TAX_ORG_CODE,
            TAX_REG_NO,
            TAXPAYER_ID,
            TAXPAYER_NAME,
            date("checked_on", "验换证日期"),
        ],
    },
    RecordKind {
        name: "tax_abnormal",
        label: "非正常户信息",
        owner: Owner::Tax,
        shape: Shape::State,
        fields: &[
            TAX_ORG_CODE,
            TAX_REG_NO,
            TAXPAYER_ID,
            TAXPAYER_NAME,
            date("identified_on", "认定日期"),
            date("lifted_on", "解除日期"),
        ],
    },
    RecordKind {
        name: "tax_revocation_request",
        label: "提请吊销营业执照信息",
        owner: Owner::Tax,
        shape: Shape::Events,
        fields: &[
            REG_NO,
            NAME,
            text("reason", "提请吊销原因"),
            date("requested_on", "提请吊销日期"),
        ],
    },
    RecordKind {
        name: "tax_penalty",
        label: "行政处罚信息",
        owner: Owner::Tax,
        shape: Shape::Events,
        fields: &[
            TAX_ORG_CODE,
            TAX_REG_NO,
            TAXPAYER_ID,
            TAXPAYER_NAME,
            text("violation", "违法违章手段"),
            text("decision", "行政处罚结果"),
            date("decided_on", "行政处罚日期"),
        ],
    },
    RecordKind {
        name: "tax_unlicensed",
        label: "无照经营企业信息",
        owner: Owner::Tax,
        shape: Shape::Events,
        fields: &[key("name", "企业名称"), text("address", "住所")],
    },
    RecordKind {
        name: "qts_code_issuance",
        label: "组织机构代码颁证信息",
        owner: Owner::Qts,
        shape: Shape::State,
        fields: &[
            text("reg_no", "企业注册号"),
            key("org_code", "组织机构代码"),
            text("org_name", "机构名称"),
            text("org_type", "机构注册类型"),
            date("issued_on", "颁证日期"),
        ],
    },
    RecordKind {
        name: "qts_code_change",
        label: "组织机构代码变更信息",
        owner: Owner::Qts,
        shape: Shape::Events,
        fields: &[
            key("org_code", "组织机构代码"),
            text("org_name", "机构名称"),
            text("change_item", "变更事项"),
            text("new_value", "变更内容"),
            date("changed_on", "变更日期"),
        ],
    },
    RecordKind {
        name: "qts_code_voided",
        label: "组织机构代码废置信息",
        owner: Owner::Qts,
        shape: Shape::State,
        fields: &[
            key("org_code", "组织机构代码"),
            text("org_name", "机构名称"),
            date("voided_on", "废置日期"),
        ],
    },
];

/// A record kind by name.
pub fn record_kind(name: &str) -> Option<&'static RecordKind> {
    RECORD_KINDS.iter().find(|k| k.name == name)
}

/// The four bureaus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bureau {
    /// 工商行政管理局.
    Aic,
    /// 国家税务局.
    Ntax,
    /// 地方税务局.
    Ltax,
    /// 质量技术监督局.
    Qts,
}

impl Bureau {
    /// All four, in SPEC order.
    pub const ALL: [Bureau; 4] = [Bureau::Aic, Bureau::Ntax, Bureau::Ltax, Bureau::Qts];

    /// The code used in config, mappings and the warehouse.
    pub fn code(self) -> &'static str {
        match self {
            Bureau::Aic => "aic",
            Bureau::Ntax => "ntax",
            Bureau::Ltax => "ltax",
            Bureau::Qts => "qts",
        }
    }

    /// The bureau's Chinese name.
    pub fn label(self) -> &'static str {
        match self {
            Bureau::Aic => "工商局",
            Bureau::Ntax => "国税局",
            Bureau::Ltax => "地税局",
            Bureau::Qts => "质监局",
        }
    }

    /// A bureau by code.
    pub fn from_code(code: &str) -> Option<Bureau> {
        Bureau::ALL.into_iter().find(|b| b.code() == code)
    }
}

/// The 22 exchange streams: (bureau, record kind) pairs SPEC defines.
pub fn streams() -> impl Iterator<Item = (Bureau, &'static RecordKind)> {
    Bureau::ALL.into_iter().flat_map(|b| {
        RECORD_KINDS
            .iter()
            .filter(move |k| k.accepts_bureau(b))
            .map(move |k| (b, k))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_lists_every_record_kind_with_its_fields() {
        let readme = include_str!("../README.md");
        for k in RECORD_KINDS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` | {} |", k.name, k.label)))
                .unwrap_or_else(|| panic!("README has no row for {}", k.name));
            for f in k.fields {
                assert!(
                    row.contains(&format!(" {}", f.name))
                        || row.contains(&format!("**{}**", f.name)),
                    "README's row of {} lacks {}",
                    k.name,
                    f.name
                );
            }
        }
    }

    use super::*;

    #[test]
    fn spec_has_fifteen_kinds_and_twenty_two_streams() {
        assert_eq!(RECORD_KINDS.len(), 15);
        assert_eq!(streams().count(), 22);
    }

    #[test]
    fn every_kind_has_exactly_one_required_identifier_field() {
        for kind in RECORD_KINDS {
            let required: Vec<_> = kind.fields.iter().filter(|f| f.required).collect();
            assert_eq!(required.len(), 1, "{}", kind.name);
        }
    }

    #[test]
    fn field_names_are_unique_within_a_kind() {
        for kind in RECORD_KINDS {
            let mut names: Vec<_> = kind.fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), kind.fields.len(), "{}", kind.name);
        }
    }
}

//! The consistency rules of SPEC, by name — shared by the simulator's ground truth and the
//! warehouse's findings.

use serde::Serialize;

/// One consistency rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// AIC-registered (active) > 30 days, no tax registration at a bureau that covers it.
    RegisteredNotTaxRegistered,
    /// AIC deregistered or revoked, tax registration still active.
    AicClosedTaxActive,
    /// Tax deregistered, AIC still active.
    TaxClosedAicActive,
    /// Names differ between bureaus after normalization.
    NameMismatch,
    /// Legal representative differs between AIC and tax.
    LegalRepMismatch,
    /// Address differs between AIC and tax after normalization.
    AddressMismatch,
    /// Tax's org code for a reg_no differs from QTS's, or a reg_no has several.
    OrgCodeConflict,
    /// AIC-registered with no org code issued after the deadline.
    NoOrgCode,
    /// Org code voided while AIC or tax is active.
    OrgCodeVoidedActive,
    /// Tax abnormal (not lifted) while AIC is active.
    AbnormalTaxpayerActive,
    /// Tax asked AIC to revoke; not revoked after N days.
    RevocationRequestPending,
    /// Tax reported an unlicensed business.
    UnlicensedBusiness,
    /// Registered at one tax bureau but not the other, or different taxpayer ids.
    NtaxLtaxMismatch,
    /// An identifier fails its check.
    InvalidIdentifier,
}

impl Rule {
    /// All 14, in SPEC order.
    pub const ALL: [Rule; 14] = [
        Rule::RegisteredNotTaxRegistered,
        Rule::AicClosedTaxActive,
        Rule::TaxClosedAicActive,
        Rule::NameMismatch,
        Rule::LegalRepMismatch,
        Rule::AddressMismatch,
        Rule::OrgCodeConflict,
        Rule::NoOrgCode,
        Rule::OrgCodeVoidedActive,
        Rule::AbnormalTaxpayerActive,
        Rule::RevocationRequestPending,
        Rule::UnlicensedBusiness,
        Rule::NtaxLtaxMismatch,
        Rule::InvalidIdentifier,
    ];

    /// The rule's name (also its view in schema `compare`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::RegisteredNotTaxRegistered => "registered_not_tax_registered",
            Rule::AicClosedTaxActive => "aic_closed_tax_active",
            Rule::TaxClosedAicActive => "tax_closed_aic_active",
            Rule::NameMismatch => "name_mismatch",
            Rule::LegalRepMismatch => "legal_rep_mismatch",
            Rule::AddressMismatch => "address_mismatch",
            Rule::OrgCodeConflict => "org_code_conflict",
            Rule::NoOrgCode => "no_org_code",
            Rule::OrgCodeVoidedActive => "org_code_voided_active",
            Rule::AbnormalTaxpayerActive => "abnormal_taxpayer_active",
            Rule::RevocationRequestPending => "revocation_request_pending",
            Rule::UnlicensedBusiness => "unlicensed_business",
            Rule::NtaxLtaxMismatch => "ntax_ltax_mismatch",
            Rule::InvalidIdentifier => "invalid_identifier",
        }
    }

    /// The Chinese label used in work lists.
    pub fn label(self) -> &'static str {
        match self {
            Rule::RegisteredNotTaxRegistered => "已办照未办税务登记（漏征漏管户）",
            Rule::AicClosedTaxActive => "工商已注销或吊销、税务仍正常",
            Rule::TaxClosedAicActive => "税务已注销、工商仍在营",
            Rule::NameMismatch => "名称不一致",
            Rule::LegalRepMismatch => "法定代表人不一致",
            Rule::AddressMismatch => "地址不一致",
            Rule::OrgCodeConflict => "组织机构代码冲突",
            Rule::NoOrgCode => "未办组织机构代码",
            Rule::OrgCodeVoidedActive => "代码已废置、仍在营",
            Rule::AbnormalTaxpayerActive => "非正常户、工商仍在营",
            Rule::RevocationRequestPending => "提请吊销未处理",
            Rule::UnlicensedBusiness => "无照经营",
            Rule::NtaxLtaxMismatch => "国地税登记不一致",
            Rule::InvalidIdentifier => "代码校验错误",
        }
    }

    /// A rule by name.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

//! From a mapping file as written to a [`Mapping`] that can run, with every problem
//! reported at its `file:line:column`.
//!
//! Checks: the record kind exists and fits the bureau; every field is canonical for that
//! kind and every required one is present; each field has exactly one input; identifiers
//! are valid SQL identifiers; transform arguments make sense; code-table files load.

use super::date::DateFormat;
use super::file::{ConditionFile, FieldFile, MappingFile, TransformFile};
use super::text::Legacy;
use super::transform::{Missing, Transform};
use super::{Condition, FieldSpec, Input, Mapping, Test, is_identifier, is_table_name};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::indicators::{self, Bureau, RecordKind};
use crate::yaml::{self, Spanned, SpannedMap, at};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Compiler<'a> {
    path: &'a Path,
    found: Diagnostics,
    hasher: Sha256,
    /// The record kind's name (or the file's stem when the kind is unknown), for the
    /// aliases expressions are read under.
    kind_name: String,
}

impl Compiler<'_> {
    fn error<T>(&mut self, value: &Spanned<T>, message: impl Into<String>) {
        self.found.push(at(self.path, value, message));
    }

    fn identifier(&mut self, value: &Spanned<String>, what: &str) {
        if !is_identifier(&value.value) {
            self.error(
                value,
                format!("{what}: `{}` is not a valid SQL identifier (letters, digits, _, $, #; starting with a letter or _)", value.value),
            );
        }
    }
}

/// Compiles one mapping file. `bureau`, when known, is the bureau of the source using it.
pub fn compile_file(path: &Path, bureau: Option<Bureau>) -> Result<Mapping, Diagnostics> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot read the mapping: {e}")))?;
    let file: MappingFile = yaml::parse(path, &text)?;
    let mut c = Compiler {
        path,
        found: Diagnostics::default(),
        hasher: Sha256::new(),
        kind_name: file.record_kind.value.clone(),
    };
    c.hasher.update(text.as_bytes());

    let kind = indicators::record_kind(&file.record_kind.value);
    match kind {
        None => {
            let valid: Vec<&str> = indicators::RECORD_KINDS
                .iter()
                .filter(|k| bureau.is_none_or(|b| k.accepts_bureau(b)))
                .map(|k| k.name)
                .collect();
            c.error(
                &file.record_kind,
                format!(
                    "unknown record kind `{}`{}; the record kinds{}: {}",
                    file.record_kind.value,
                    suggest_kind(&file.record_kind.value)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default(),
                    bureau
                        .map(|b| format!(" of bureau {}", b.code()))
                        .unwrap_or_default(),
                    valid.join(", ")
                ),
            );
        }
        Some(k) => {
            if let Some(b) = bureau
                && !k.accepts_bureau(b)
            {
                c.error(
                    &file.record_kind,
                    format!(
                        "record kind `{}` cannot come from bureau {} (it belongs to {})",
                        k.name,
                        b.code(),
                        k.owner.bureaus()
                    ),
                );
            }
        }
    }

    let src = &file.source;
    if !is_table_name(&src.table.value) {
        c.error(
            &src.table,
            format!(
                "`source.table`: `{}` is not a valid table name (optionally schema.table)",
                src.table.value
            ),
        );
    }
    if src.key.value.is_empty() {
        c.error(
            &src.key,
            "`source.key` is empty: name the column(s) that identify a row",
        );
    }
    for (i, k) in src.key.value.iter().enumerate() {
        c.identifier(k, "`source.key`");
        if src.key.value[..i]
            .iter()
            .any(|o| o.value.eq_ignore_ascii_case(&k.value))
        {
            c.error(
                k,
                format!("`source.key`: column `{}` is listed twice", k.value),
            );
        }
    }
    if let Some(m) = &src.modified_column {
        c.identifier(m, "`source.modified_column`");
    }
    let filter: Vec<Condition> = src
        .filter
        .iter()
        .filter_map(|cond| condition(&mut c, cond))
        .collect();

    let division = file
        .division
        .as_ref()
        .and_then(|d| field_spec(&mut c, "division", d));
    let mut fields: Vec<Option<FieldSpec>> =
        kind.map(|k| vec![None; k.fields.len()]).unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    let mut warnings = Vec::new();
    for (name, spec) in &file.fields.value.0 {
        if seen.contains(&name.value.as_str()) {
            c.error(name, format!("field `{}` is mapped twice", name.value));
            continue;
        }
        seen.push(&name.value);
        let compiled = field_spec(&mut c, &name.value, spec);
        // Identifiers are compared as written: a hyphen, a space or a lower-case x makes
        // the same number two different ones.
        if IDENTIFIER_FIELDS.contains(&name.value.as_str())
            && let Some(f) = &compiled
            && !matches!(f.input, Input::Constant(_))
            && !f
                .transforms
                .iter()
                .any(|t| matches!(t, Transform::Identifier))
        {
            warnings.push(at(
                c.path,
                name,
                format!(
                    "field `{}` holds an identifier but has no `identifier` transform: hyphens, spaces or a lower-case x would make the same number look like another to the comparison (add `transforms: [identifier]`)",
                    name.value
                ),
            ));
        }
        let Some(k) = kind else { continue };
        match k.fields.iter().position(|f| f.name == name.value) {
            Some(i) => fields[i] = compiled,
            None => {
                let names: Vec<_> = k.fields.iter().map(|f| f.name).collect();
                c.error(
                    name,
                    format!(
                        "unknown field `{}` for record kind {}{}",
                        name.value,
                        k.name,
                        suggest(&name.value, &names)
                    ),
                );
            }
        }
    }
    if let Some(k) = kind {
        for f in k.fields.iter().filter(|f| f.required) {
            if !seen.contains(&f.name) {
                c.error(
                    &file.fields,
                    format!("missing field `{}` ({}): record kind {} needs it to identify the enterprise", f.name, f.label, k.name),
                );
            }
        }
    }

    let version = hex_prefix(&c.hasher.finalize_reset(), 12);
    let Compiler { found, .. } = c;
    let kind = match kind {
        Some(k) => k,
        None => return Err(found),
    };
    found.into_result(Mapping {
        kind,
        path: path.to_owned(),
        version,
        table: src.table.value.clone(),
        key: src.key.value.iter().map(|k| k.value.clone()).collect(),
        filter,
        modified_column: src.modified_column.as_ref().map(|m| m.value.clone()),
        trust_key: src.trust_key.as_ref().is_some_and(|t| t.value),
        division,
        fields,
        warnings,
    })
}

/// Fields that hold identifiers the comparison matches on.
const IDENTIFIER_FIELDS: [&str; 4] = ["reg_no", "org_code", "taxpayer_id", "legal_rep_id_no"];

fn condition(c: &mut Compiler<'_>, cond: &Spanned<ConditionFile>) -> Option<Condition> {
    let f = &cond.value;
    c.identifier(&f.column, "`filter.column`");
    let mut tests = Vec::new();
    if let Some(v) = &f.equals {
        tests.push(Test::In(vec![v.value.clone()]));
    }
    if let Some(v) = &f.not_equals {
        tests.push(Test::NotIn(vec![v.value.clone()]));
    }
    if let Some(v) = &f.in_ {
        tests.push(Test::In(v.value.clone()));
    }
    if let Some(v) = &f.not_in {
        tests.push(Test::NotIn(v.value.clone()));
    }
    if let Some(v) = &f.is_null {
        tests.push(Test::IsNull(v.value));
    }
    if tests.len() != 1 {
        c.error(
            cond,
            format!(
                "filter on `{}` needs exactly one of equals, not_equals, in, not_in, is_null",
                f.column.value
            ),
        );
        return None;
    }
    tests.pop().map(|test| Condition {
        column: f.column.value.clone(),
        test,
    })
}

fn field_spec(c: &mut Compiler<'_>, name: &str, spec: &Spanned<FieldFile>) -> Option<FieldSpec> {
    let f = &spec.value;
    let inputs = [
        f.column.is_some(),
        f.expression.is_some(),
        f.value.is_some(),
        f.concat.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if inputs != 1 {
        c.error(
            spec,
            format!("field `{name}` needs exactly one of column, expression, value, concat"),
        );
    }
    let input = if let Some(col) = &f.column {
        c.identifier(col, &format!("field `{name}`"));
        Input::Column(col.value.clone())
    } else if let Some(cs) = &f.concat {
        if cs.value.len() < 2 {
            c.error(
                cs,
                format!("field `{name}`: concat joins two or more columns, e.g. `concat: [INDUSTRYPHY, INDUSTRYCO]`"),
            );
        }
        for col in &cs.value {
            c.identifier(col, &format!("field `{name}`"));
        }
        Input::Concat(cs.value.iter().map(|col| col.value.clone()).collect())
    } else if let Some(e) = &f.expression {
        if let Err(why) = super::expression::validate(&e.value) {
            c.error(e, format!("field `{name}`: {why}"));
        }
        Input::Expression {
            sql: e.value.clone(),
            alias: format!("__ebis_{}_{name}", c.kind_name),
            origin: format!(
                "{}:{}:{} field `{name}`",
                c.path.display(),
                e.referenced.line(),
                e.referenced.column()
            ),
        }
    } else {
        Input::Constant(
            f.value
                .as_ref()
                .map(|v| v.value.clone())
                .unwrap_or_default(),
        )
    };
    let transforms: Vec<Transform> = f
        .transforms
        .iter()
        .filter_map(|t| transform(c, name, t))
        .collect();
    (inputs == 1).then_some(FieldSpec {
        input,
        transforms,
        seen_at: Default::default(),
    })
}

fn transform(c: &mut Compiler<'_>, name: &str, t: &Spanned<TransformFile>) -> Option<Transform> {
    Some(match &t.value {
        TransformFile::Trim => Transform::Trim,
        TransformFile::Halfwidth => Transform::Halfwidth,
        TransformFile::Nfkc => Transform::Nfkc,
        TransformFile::Upper => Transform::Upper,
        TransformFile::CollapseSpaces => Transform::CollapseSpaces,
        TransformFile::Identifier => Transform::Identifier,
        TransformFile::NullIf(values) => Transform::NullIf(values.clone()),
        TransformFile::Default(v) => Transform::Default(v.clone()),
        TransformFile::Date(formats) => {
            let written = match formats {
                super::file::OneOrMany::One(s) => vec![s.clone()],
                super::file::OneOrMany::Many(v) => v.clone(),
            };
            if written.is_empty() {
                c.error(
                    t,
                    format!("field `{name}`: `date` needs at least one format"),
                );
                return None;
            }
            let mut compiled = Vec::new();
            for w in &written {
                match DateFormat::compile(w) {
                    Ok(f) => compiled.push(f),
                    Err(e) => c.error(t, format!("field `{name}`: {e}")),
                }
            }
            (compiled.len() == written.len()).then_some(Transform::Date(compiled))?
        }
        TransformFile::Decode(enc) => match enc.to_ascii_lowercase().as_str() {
            "gbk" | "gb2312" | "cp936" => Transform::Decode(Legacy::Gbk),
            "gb18030" => Transform::Decode(Legacy::Gb18030),
            other => {
                c.error(
                    t,
                    format!("field `{name}`: cannot decode `{other}` (expected gbk or gb18030)"),
                );
                return None;
            }
        },
        TransformFile::Lookup(l) => {
            let missing = match l.missing.as_deref() {
                None | Some("reject") => Missing::Reject,
                Some("keep") => Missing::Keep,
                Some("null") => Missing::Null,
                Some(other) => {
                    c.error(t, format!("field `{name}`: lookup `missing: {other}` (expected reject, keep or null)"));
                    return None;
                }
            };
            if l.map.is_none() && l.file.is_none() {
                c.error(t, format!("field `{name}`: lookup needs `map` or `file`"));
                return None;
            }
            let mut table = HashMap::new();
            if let Some(file) = &l.file {
                let folder = c.path.parent().unwrap_or(Path::new(""));
                let code_path = match code_table_path(folder, file) {
                    Ok(p) => p,
                    Err(why) => {
                        c.error(t, format!("field `{name}`: lookup file `{file}`: {why}"));
                        return None;
                    }
                };
                match load_code_table(&code_path) {
                    Ok((entries, text)) => {
                        c.hasher.update(text.as_bytes());
                        table.extend(entries);
                    }
                    Err(d) => {
                        c.error(t, format!("field `{name}`: lookup file: {d}"));
                        return None;
                    }
                }
            }
            if let Some(map) = &l.map {
                table.extend(map.0.iter().map(|(k, v)| (k.value.clone(), v.clone())));
            }
            Transform::Lookup {
                table: Arc::new(table),
                missing,
            }
        }
    })
}

/// Where a lookup's code table is: a relative path that stays inside the mapping file's
/// folder, also once symbolic links are followed. A mapping must not make ebis read any
/// other file (`/etc/passwd`, `../../secrets.yaml`).
fn code_table_path(folder: &Path, file: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let written = Path::new(file);
    if written.is_absolute() || file.starts_with('~') {
        return Err("must be a path relative to the mapping file's folder".to_owned());
    }
    if written
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("must stay inside the mapping file's folder (no `..`)".to_owned());
    }
    let path = folder.join(written);
    if let (Ok(real), Ok(base)) = (path.canonicalize(), folder.canonicalize())
        && !real.starts_with(&base)
    {
        return Err("is a link to a file outside the mapping file's folder".to_owned());
    }
    Ok(path)
}

/// Reads a code table: a YAML mapping of code → value.
fn load_code_table(path: &Path) -> Result<(Vec<(String, String)>, String), Diagnostic> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot read `{}`: {e}", path.display())))?;
    let map: SpannedMap<String> = yaml::parse(path, &text)?;
    Ok((map.0.into_iter().map(|(k, v)| (k.value, v)).collect(), text))
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    let mut s = String::new();
    for b in bytes.iter().take(n.div_ceil(2)) {
        let _ = write!(s, "{b:02x}");
    }
    s.truncate(n);
    s
}

/// Words a DBA may write for the words of the record kinds' names.
const KIND_SYNONYMS: [(&str, &str); 24] = [
    ("punishment", "penalty"),
    ("punish", "penalty"),
    ("fine", "penalty"),
    ("sanction", "penalty"),
    ("cancel", "deregistration"),
    ("cancellation", "deregistration"),
    ("closure", "deregistration"),
    ("dereg", "deregistration"),
    ("revoke", "revocation"),
    ("revoked", "revocation"),
    ("inspect", "inspection"),
    ("annual", "annual"),
    ("issue", "issuance"),
    ("issued", "issuance"),
    ("void", "voided"),
    ("alter", "amendment"),
    ("alteration", "amendment"),
    ("amend", "amendment"),
    ("abnormality", "abnormal"),
    ("irregular", "abnormal"),
    ("unregistered", "unlicensed"),
    ("register", "registration"),
    ("establish", "establishment"),
    ("verification", "check"),
];

/// The record kind a DBA most likely meant: one whose Chinese label it is, one sharing
/// the most words (synonyms counted: `tax_punishment` → `tax_penalty`), or one a typo
/// away.
fn suggest_kind(written: &str) -> Option<&'static str> {
    if let Some(k) = indicators::RECORD_KINDS
        .iter()
        .find(|k| k.label == written.trim())
    {
        return Some(k.name);
    }
    let words: Vec<String> = written
        .to_ascii_lowercase()
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            KIND_SYNONYMS
                .iter()
                .find(|(s, _)| *s == w)
                .map(|(_, k)| (*k).to_owned())
                .unwrap_or_else(|| w.to_owned())
        })
        .collect();
    let scored = indicators::RECORD_KINDS
        .iter()
        .map(|k| {
            let shared = k
                .name
                .split('_')
                .filter(|p| words.iter().any(|w| w == p))
                .count();
            (shared, k.name)
        })
        .filter(|(shared, name)| *shared >= 2 || (*shared == 1 && name.split('_').count() == 1))
        .max_by_key(|(shared, name)| (*shared, std::cmp::Reverse(edit_distance(written, name))));
    if let Some((_, name)) = scored {
        return Some(name);
    }
    let names: Vec<&str> = indicators::RECORD_KINDS.iter().map(|k| k.name).collect();
    names
        .iter()
        .map(|k| (edit_distance(written, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// ` (did you mean `x`?)` when a known name is close, else an empty string.
fn suggest(written: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(written, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The mapping files of one folder (`*.yaml`, `*.yml`, not recursive), sorted by name.
pub fn mapping_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Diagnostic::file(dir, format!("cannot read the mappings folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Diagnostic::file(
            dir,
            "no mapping files (*.yaml) in this folder",
        ));
    }
    Ok(files)
}

/// Checks that mappings sharing a table agree on its key and do not fill the same record
/// kind twice.
pub fn check_together(mappings: &[Mapping]) -> Diagnostics {
    let mut found = Diagnostics::default();
    for (i, m) in mappings.iter().enumerate() {
        for earlier in &mappings[..i] {
            if !earlier.table.eq_ignore_ascii_case(&m.table) {
                if earlier.kind.name == m.kind.name {
                    found.push(Diagnostic::file(
                        &m.path,
                        format!(
                            "record kind {} is filled from table {} here and from table {} in {}: their source keys could collide; fill a record kind from one table per source",
                            m.kind.name,
                            m.table,
                            earlier.table,
                            earlier.path.display()
                        ),
                    ));
                }
                continue;
            }
            let same_key = earlier.key.len() == m.key.len()
                && earlier
                    .key
                    .iter()
                    .zip(&m.key)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b));
            if !same_key {
                found.push(Diagnostic::file(
                    &m.path,
                    format!(
                        "table {} has key ({}) here but ({}) in {}: mappings of one table must agree on its key",
                        m.table,
                        m.key.join(", "),
                        earlier.key.join(", "),
                        earlier.path.display()
                    ),
                ));
            }
            if earlier.kind.name == m.kind.name {
                found.push(Diagnostic::file(
                    &m.path,
                    format!(
                        "record kind {} is already filled from table {} by {}",
                        m.kind.name,
                        m.table,
                        earlier.path.display()
                    ),
                ));
            }
        }
    }
    found
}

/// The record kinds a bureau's folder does not map (informational for `ebis check`).
pub fn unmapped_kinds(bureau: Bureau, mappings: &[Mapping]) -> Vec<&'static RecordKind> {
    indicators::RECORD_KINDS
        .iter()
        .filter(|k| k.accepts_bureau(bureau) && !mappings.iter().any(|m| m.kind.name == k.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kinds_are_suggested_by_synonym_label_or_typo() {
        assert_eq!(suggest_kind("tax_punishment"), Some("tax_penalty"));
        assert_eq!(suggest_kind("行政处罚信息"), Some("tax_penalty"));
        assert_eq!(suggest_kind("aic_establishmnt"), Some("aic_establishment"));
        assert_eq!(suggest_kind("qts_code_void"), Some("qts_code_voided"));
        assert_eq!(suggest_kind("tax_cancellation"), Some("tax_deregistration"));
        assert_eq!(suggest_kind("weather"), None);
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(
            suggest("nmae", &["name", "reg_no"]),
            " (did you mean `name`?)"
        );
        assert_eq!(suggest("zzzzzz", &["name", "reg_no"]), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

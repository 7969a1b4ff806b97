//! The reference material compiled into the binary, so `ebis demo` and `ebis bench` run
//! from any folder: the bureaus' reference schemas (`sql/demo/mysql/`) and the example
//! mappings (`mappings/`).

use std::path::Path;

/// Each bureau's reference schema for MySQL/MariaDB.
pub const SCHEMAS: [(&str, &str); 4] = [
    ("aic", include_str!("../sql/demo/mysql/aic.sql")),
    ("ntax", include_str!("../sql/demo/mysql/ntax.sql")),
    ("ltax", include_str!("../sql/demo/mysql/ltax.sql")),
    ("qts", include_str!("../sql/demo/mysql/qts.sql")),
];

/// Every file under `mappings/`, by its path.
pub const MAPPINGS: &[(&str, &str)] = &[
    (
        "mappings/aic/aic_amendment.yaml",
        include_str!("../mappings/aic/aic_amendment.yaml"),
    ),
    (
        "mappings/aic/aic_annual_inspection.yaml",
        include_str!("../mappings/aic/aic_annual_inspection.yaml"),
    ),
    (
        "mappings/aic/aic_deregistration.yaml",
        include_str!("../mappings/aic/aic_deregistration.yaml"),
    ),
    (
        "mappings/aic/aic_establishment.yaml",
        include_str!("../mappings/aic/aic_establishment.yaml"),
    ),
    (
        "mappings/aic/aic_revocation.yaml",
        include_str!("../mappings/aic/aic_revocation.yaml"),
    ),
    (
        "mappings/aic/codes/enttype.yaml",
        include_str!("../mappings/aic/codes/enttype.yaml"),
    ),
    (
        "mappings/aic/codes/regorg.yaml",
        include_str!("../mappings/aic/codes/regorg.yaml"),
    ),
    (
        "mappings/ltax/codes/swjg.yaml",
        include_str!("../mappings/ltax/codes/swjg.yaml"),
    ),
    (
        "mappings/ltax/tax_abnormal.yaml",
        include_str!("../mappings/ltax/tax_abnormal.yaml"),
    ),
    (
        "mappings/ltax/tax_certificate_check.yaml",
        include_str!("../mappings/ltax/tax_certificate_check.yaml"),
    ),
    (
        "mappings/ltax/tax_deregistration.yaml",
        include_str!("../mappings/ltax/tax_deregistration.yaml"),
    ),
    (
        "mappings/ltax/tax_penalty.yaml",
        include_str!("../mappings/ltax/tax_penalty.yaml"),
    ),
    (
        "mappings/ltax/tax_registration.yaml",
        include_str!("../mappings/ltax/tax_registration.yaml"),
    ),
    (
        "mappings/ltax/tax_revocation_request.yaml",
        include_str!("../mappings/ltax/tax_revocation_request.yaml"),
    ),
    (
        "mappings/ltax/tax_unlicensed.yaml",
        include_str!("../mappings/ltax/tax_unlicensed.yaml"),
    ),
    (
        "mappings/ntax/codes/swjg.yaml",
        include_str!("../mappings/ntax/codes/swjg.yaml"),
    ),
    (
        "mappings/ntax/tax_abnormal.yaml",
        include_str!("../mappings/ntax/tax_abnormal.yaml"),
    ),
    (
        "mappings/ntax/tax_certificate_check.yaml",
        include_str!("../mappings/ntax/tax_certificate_check.yaml"),
    ),
    (
        "mappings/ntax/tax_deregistration.yaml",
        include_str!("../mappings/ntax/tax_deregistration.yaml"),
    ),
    (
        "mappings/ntax/tax_penalty.yaml",
        include_str!("../mappings/ntax/tax_penalty.yaml"),
    ),
    (
        "mappings/ntax/tax_registration.yaml",
        include_str!("../mappings/ntax/tax_registration.yaml"),
    ),
    (
        "mappings/ntax/tax_revocation_request.yaml",
        include_str!("../mappings/ntax/tax_revocation_request.yaml"),
    ),
    (
        "mappings/ntax/tax_unlicensed.yaml",
        include_str!("../mappings/ntax/tax_unlicensed.yaml"),
    ),
    (
        "mappings/qts/codes/jglx.yaml",
        include_str!("../mappings/qts/codes/jglx.yaml"),
    ),
    (
        "mappings/qts/qts_code_change.yaml",
        include_str!("../mappings/qts/qts_code_change.yaml"),
    ),
    (
        "mappings/qts/qts_code_issuance.yaml",
        include_str!("../mappings/qts/qts_code_issuance.yaml"),
    ),
    (
        "mappings/qts/qts_code_voided.yaml",
        include_str!("../mappings/qts/qts_code_voided.yaml"),
    ),
];

/// A bureau's schema as single statements.
pub fn schema_statements(bureau: &str) -> Vec<String> {
    let text = SCHEMAS
        .iter()
        .find(|(b, _)| *b == bureau)
        .map(|(_, t)| *t)
        .unwrap_or("");
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_owned());
            cur.clear();
        }
    }
    out
}

/// Writes the embedded mappings under `dir` (as `dir/mappings/<bureau>/…`).
pub fn write_mappings(dir: &Path) -> std::io::Result<()> {
    for (path, text) in MAPPINGS {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapping_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        let mut stack = vec![root.join("mappings")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(
                        p.strip_prefix(root)
                            .expect("under root")
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        let embedded: Vec<String> = MAPPINGS.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn schemas_split_into_create_tables() {
        let aic = schema_statements("aic");
        assert_eq!(aic.len(), 3);
        assert!(aic.iter().all(|s| s.starts_with("CREATE TABLE")));
        assert_eq!(schema_statements("ltax").len(), 7);
    }
}

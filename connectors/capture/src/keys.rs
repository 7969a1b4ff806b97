//! Keys and names, whatever the dialect: whether the source guarantees a mapped key, and
//! a `schema.table` name split.

/// `schema.table` → (Some(schema), table).
pub fn split_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, name),
    }
}

/// What the source does not guarantee about a mapped key, if anything: a key must
/// contain every column of some unique index (PRIMARY or UNIQUE) and have no nullable
/// column, or rows could share a key and merge into one warehouse row. `unique` lists
/// (index, column) of the table's unique indexes.
pub fn key_problem(
    key: &[String],
    unique: &[(String, String)],
    nullable: &[&str],
) -> Option<String> {
    const OVERRIDE: &str = "or, if the application keeps it unique and never NULL, set `source.trust_key: true` in each mapping of the table (rows sharing a key then overwrite each other in the warehouse, and `ebis verify` reports them)";
    let written = key.join(", ");
    let mut indexes: Vec<(&str, Vec<&str>)> = Vec::new();
    for (index, column) in unique {
        match indexes.iter_mut().find(|(i, _)| i == index) {
            Some((_, cols)) => cols.push(column),
            None => indexes.push((index, vec![column])),
        }
    }
    let enforced = indexes.iter().any(|(_, cols)| {
        cols.iter()
            .all(|c| key.iter().any(|k| k.eq_ignore_ascii_case(c)))
    });
    if !enforced {
        return Some(format!(
            "key ({written}) is not guaranteed unique: no primary key or unique index lies within it, so rows sharing a key would merge into one in the warehouse; add a unique index at the source, map a key that has one, {OVERRIDE}"
        ));
    }
    if let Some(c) = nullable.first() {
        return Some(format!(
            "key column {c} allows NULL: rows without a key cannot be told apart; declare it NOT NULL at the source, map a key without it, {OVERRIDE}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(i, c)| ((*i).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn a_key_must_hold_a_unique_index_and_no_nullable_column() {
        let key = vec!["PRIPID".to_owned()];
        assert_eq!(key_problem(&key, &idx(&[("PRIMARY", "pripid")]), &[]), None);
        // A composite key over a unique index is unique too.
        let wide = vec!["PRIPID".to_owned(), "NJND".to_owned()];
        assert_eq!(
            key_problem(&wide, &idx(&[("PRIMARY", "PRIPID")]), &[]),
            None
        );
        // A unique index on more columns than the key does not make the key unique.
        let p = key_problem(&key, &idx(&[("uk", "PRIPID"), ("uk", "NJND")]), &[]).expect("refused");
        assert!(
            p.starts_with("key (PRIPID) is not guaranteed unique"),
            "{p}"
        );
        assert!(p.contains("source.trust_key: true"), "{p}");
        let p = key_problem(&key, &[], &[]).expect("no index at all");
        assert!(p.contains("no primary key or unique index"), "{p}");
        let p = key_problem(&key, &idx(&[("uk", "PRIPID")]), &["PRIPID"]).expect("nullable");
        assert!(p.starts_with("key column PRIPID allows NULL"), "{p}");
    }
}

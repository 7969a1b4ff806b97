//! What a mapping's `expression:` may be: one SQL expression the source evaluates with each
//! row, and nothing that changes what the statement around it reads.
//!
//! The connector pastes the text into `SELECT …, (<expression>) AS <alias> FROM <table>`, so
//! a comment could hide the rest of that statement and an unbalanced parenthesis could
//! add select items of its own. The rules are deliberately simple and dialect-free: no
//! comment markers, no `;`, no backslash (dialects disagree on what it escapes inside a
//! literal, so a check could read a literal's end where the server does not), quotes
//! closed, parentheses balanced and never closing what the expression did not open, and
//! none of the few statements or functions that reach outside a query (`INTO`, file and
//! sleep functions). Pure: no I/O.

/// Words an expression may not use (outside literals), compared case-insensitively: they
/// write files or variables, read server files, or stall the source.
const FORBIDDEN_WORDS: [&str; 10] = [
    "into",
    "load_file",
    "sleep",
    "benchmark",
    "get_lock",
    "pg_sleep",
    "pg_read_file",
    "pg_read_binary_file",
    "lo_import",
    "utl_file",
];

/// A token of an expression, as far as these checks need.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A bare word: keyword, name or number (`E_BASEINFO`, `b.REGNO`, `SELECT`).
    Word(&'a str),
    /// A quoted identifier (`` `a b` `` or `"a b"`), without its quotes.
    Quoted(&'a str),
    /// A string literal.
    Literal,
    /// Any other character.
    Punct(char),
}

/// Checks an expression; the error says what is wrong, in the DBA's terms.
pub fn validate(sql: &str) -> Result<(), String> {
    if sql.trim().is_empty() {
        return Err("an expression must not be empty".to_owned());
    }
    for (marker, what) in [
        (";", "`;` (one expression, not statements)"),
        ("--", "a comment (`--`)"),
        ("#", "a comment (`#`)"),
        ("/*", "a comment (`/*`)"),
        ("*/", "a comment end (`*/`)"),
        (
            "\\",
            "a backslash (write the character with CHAR()/CHR() instead)",
        ),
    ] {
        if sql.contains(marker) {
            return Err(format!("an expression may not contain {what}"));
        }
    }
    let tokens = tokenize(sql)?;
    let mut depth = 0i32;
    for t in &tokens {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth < 0 {
                    return Err(
                        "an expression may not close a parenthesis it did not open".to_owned()
                    );
                }
            }
            Token::Word(w) if depth == 0 && w.eq_ignore_ascii_case("from") => {
                return Err(
                    "an expression may not read FROM outside parentheses (write a subquery as `(SELECT … FROM …)`)"
                        .to_owned(),
                );
            }
            Token::Word(w) => {
                let lower = w.to_ascii_lowercase();
                let name = lower.rsplit('.').next().unwrap_or(&lower);
                if FORBIDDEN_WORDS.contains(&name) {
                    return Err(format!("an expression may not use `{w}`"));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("an expression's parentheses must balance".to_owned());
    }
    Ok(())
}

/// The tables an expression reads (after `FROM` or `JOIN`, comma lists included), in the
/// order written, as written: a reviewer's aid read off the tokens, not a parser (the
/// source's own account privileges are what bound an expression). Assumes [`validate`]
/// passed.
pub fn tables_read(sql: &str) -> Vec<String> {
    let Ok(tokens) = tokenize(sql) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_list = matches!(tokens[i], Token::Word(w) if w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("join"));
        i += 1;
        if !starts_list {
            continue;
        }
        // table [alias] [, table [alias]]…
        loop {
            let name = match tokens.get(i) {
                Some(Token::Word(w)) if !is_clause_word(w) => (*w).to_owned(),
                Some(Token::Quoted(q)) => (*q).to_owned(),
                _ => break,
            };
            let mut name = name;
            i += 1;
            // A qualified name written with quoted parts: `a`.`b`.
            while matches!(tokens.get(i), Some(Token::Punct('.'))) {
                match tokens.get(i + 1) {
                    Some(Token::Word(w)) => name = format!("{name}.{w}"),
                    Some(Token::Quoted(q)) => name = format!("{name}.{q}"),
                    _ => break,
                }
                i += 2;
            }
            if !out.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
                out.push(name);
            }
            // Skip an alias (`AS x`, `x`).
            if matches!(tokens.get(i), Some(Token::Word(w)) if w.eq_ignore_ascii_case("as")) {
                i += 1;
            }
            if matches!(tokens.get(i), Some(Token::Word(w)) if !is_clause_word(w)) {
                i += 1;
            }
            if matches!(tokens.get(i), Some(Token::Punct(','))) {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

fn is_clause_word(w: &str) -> bool {
    [
        "where", "on", "join", "inner", "left", "right", "full", "outer", "cross", "group",
        "order", "having", "limit", "union", "select", "using", "natural", "fetch", "offset",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

fn tokenize(sql: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                // A quote ends at its next occurrence not doubled ('' inside '…').
                let mut end = None;
                while let Some((j, d)) = chars.next() {
                    if d == c {
                        if chars.peek().is_some_and(|&(_, e)| e == c) {
                            chars.next();
                            continue;
                        }
                        end = Some(j);
                        break;
                    }
                }
                let Some(end) = end else {
                    return Err(format!("an expression's {c} quote is not closed"));
                };
                tokens.push(if c == '\'' {
                    Token::Literal
                } else {
                    Token::Quoted(&sql[i + 1..end])
                });
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || matches!(d, '_' | '$' | '.') {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(&sql[i..end]));
            }
            c if c.is_whitespace() => {}
            c => tokens.push(Token::Punct(c)),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_expressions_pass() {
        for ok in [
            "CONCAT(COALESCE(INDUSTRYPHY, ''), COALESCE(INDUSTRYCO, ''))",
            "(SELECT j.ZZJGDM FROM DJ_JL_JBSJ j WHERE j.JSJDM = DJ_JL_ZXDJ.JSJDM)",
            "CASE WHEN REGSTATE = '3' THEN 'it''s closed' ELSE NULL END",
            "`weird name` + 1",
            "EXTRACT(YEAR FROM ESTDATE)",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_that_changes_the_statement_is_refused() {
        for (bad, why) in [
            ("REGNO FROM E_BASEINFO #", "comment (`#`)"),
            ("REGNO -- rest", "comment (`--`)"),
            // Inside a literal too: simple beats clever.
            ("'a -- b'", "comment (`--`)"),
            ("REGNO /* x */", "comment (`/*`)"),
            ("1; DROP TABLE x", "`;`"),
            ("REGNO), (SELECT pw FROM mysql.user", "did not open"),
            ("(REGNO", "must balance"),
            ("'abc", "quote is not closed"),
            ("'a\\' OR 1=1", "backslash"),
            ("LOAD_FILE('/etc/passwd')", "`LOAD_FILE`"),
            ("(SELECT 1 INTO OUTFILE '/tmp/x')", "`INTO`"),
            ("sleep(5)", "`sleep`"),
            ("  ", "empty"),
            ("CERNO FROM E_BASEINFO", "FROM outside parentheses"),
        ] {
            let err = validate(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_tables_an_expression_reads_are_listed() {
        assert_eq!(
            tables_read("(SELECT b.REGNO FROM E_BASEINFO b WHERE b.PRIPID = E_NJ_BASEINFO.PRIPID)"),
            ["E_BASEINFO"]
        );
        assert_eq!(
            tables_read(
                "(SELECT x.a FROM aic.T1 AS x, T3 JOIN `T 2` y ON x.k = y.k WHERE x.b = (SELECT MAX(c) FROM T4))"
            ),
            ["aic.T1", "T3", "T 2", "T4"]
        );
        assert_eq!(tables_read("(SELECT 1 FROM `aic`.`T1`)"), ["aic.T1"]);
        assert!(tables_read("CONCAT(A, B)").is_empty());
    }
}

//! Secrets: read only from the environment or from a file the config names (systemd
//! credentials, Kubernetes secrets), never printed.
//!
//! A [`Secret`] formats as `***` under both `Debug` and `Display`, so it cannot leak through
//! a log line or an error message by accident. Connection URLs are shown through
//! [`redact_url`], which drops any password.

use std::fmt;

/// A password or other credential. Its value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads the environment variable `name`; `None` when unset.
    pub fn from_env(name: &str) -> Option<Secret> {
        std::env::var(name).ok().map(Secret)
    }

    /// Reads a secret file: its content without the line end it ends with (an editor's
    /// or `echo`'s newline). The error names the file, never its content.
    pub fn from_file(path: &std::path::Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("password file {}: {e}", path.display()))?;
        let value = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(format!("password file {} is empty", path.display()));
        }
        Ok(Secret(value.to_owned()))
    }

    /// A digest to tell whether a secret changed without keeping it twice.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.as_bytes()).into()
    }

    /// The secret itself, for handing to a driver. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Names of connection parameters that carry a secret (compared case-insensitively,
/// after percent-decoding): libpq's `password` and `sslpassword`, and the spellings other
/// drivers accept in a URL's query.
const SECRET_KEYS: [&str; 5] = ["password", "sslpassword", "pass", "passwd", "pwd"];

fn is_secret_key(key: &str) -> bool {
    let decoded = percent_decode(key).to_ascii_lowercase();
    SECRET_KEYS.contains(&decoded.trim())
}

use ebis_source::percent_decode;

/// A URL with every password replaced by `***`: in the user-info
/// (`scheme://user:***@host/db`) and in query parameters (`?password=***`,
/// `&sslpassword=***`, …). Key=value connection strings get their `password=` values
/// replaced the same way, quoted values included.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_conninfo(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..scheme_end + 3].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    let (before_query, query_and_fragment) = match tail.find('?') {
        Some(q) => (&tail[..q], &tail[q + 1..]),
        None => return out + tail,
    };
    out.push_str(before_query);
    out.push('?');
    let (query, fragment) = match query_and_fragment.find('#') {
        Some(h) => (&query_and_fragment[..h], &query_and_fragment[h..]),
        None => (query_and_fragment, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => param.to_owned(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out.push_str(fragment);
    out
}

/// A libpq key=value string with secret values replaced by `***` (values may be quoted
/// with `'…'` and contain `\'`).
fn redact_conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        // A keyword up to `=` (spaces around `=` are allowed).
        let key_start = i;
        while chars
            .peek()
            .is_some_and(|&(_, c)| c != '=' && !c.is_whitespace())
        {
            chars.next();
        }
        let key_end = chars.peek().map(|&(j, _)| j).unwrap_or(text.len());
        let key = &text[key_start..key_end];
        out.push_str(key);
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            out.push(chars.next().map(|(_, c)| c).unwrap_or(' '));
        }
        if chars.peek().is_none_or(|&(_, c)| c != '=') {
            continue;
        }
        chars.next();
        out.push('=');
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            out.push(chars.next().map(|(_, c)| c).unwrap_or(' '));
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '\'') {
            value.push('\'');
            chars.next();
            while let Some((_, c)) = chars.next() {
                value.push(c);
                if c == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                } else if c == '\'' {
                    break;
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if is_secret_key(key) {
            out.push_str("***");
        } else {
            out.push_str(&value);
        }
    }
    out
}

/// True when a URL (or key=value string) carries a password anywhere: user-info, a
/// query parameter, or a `password=` pair.
pub fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://ebis:pw@db:5432/wh"),
            "postgres://ebis:***@db:5432/wh"
        );
        assert_eq!(redact_url("mysql://root@h/aic"), "mysql://root@h/aic");
        assert_eq!(
            redact_url("host=db user=x password=pw dbname=w"),
            "host=db user=x password=*** dbname=w"
        );
        assert!(url_has_password("postgres://a:b@h/d"));
        assert!(!url_has_password("postgres://a@h/d"));
    }

    #[test]
    fn passwords_in_queries_and_quoted_pairs_are_found_and_masked() {
        assert_eq!(
            redact_url("postgres://ebis@db/wh?sslmode=require&password=hunter2"),
            "postgres://ebis@db/wh?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://db/wh?PassWord=hunter2#frag"),
            "postgres://db/wh?PassWord=***#frag"
        );
        assert_eq!(
            redact_url("mysql://root@db:3306/aic?pass%77ord=x&pool_max=4"),
            "mysql://root@db:3306/aic?pass%77ord=***&pool_max=4"
        );
        assert_eq!(
            redact_url("mysql://root@db:3306?pwd=x"),
            "mysql://root@db:3306?pwd=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@db?sslpassword=k"),
            "postgres://u:***@db?sslpassword=***"
        );
        assert_eq!(
            redact_url("host=db password = 'a b\\' c' dbname=w"),
            "host=db password = *** dbname=w"
        );
        assert_eq!(
            redact_url("host=db sslpassword=k user=x"),
            "host=db sslpassword=*** user=x"
        );
        for url in [
            "postgres://ebis@db/wh?password=x",
            "postgres://ebis@db/wh?application_name=a&pass=x",
            "host=db password='x'",
            "postgres://:x@db/wh",
        ] {
            assert!(url_has_password(url), "{url}");
            let shown = redact_url(url);
            assert!(
                !shown.contains("=x") && !shown.contains(":x@") && !shown.contains("'x'"),
                "{shown}"
            );
        }
        for url in [
            "postgres://ebis@db/wh?sslmode=require",
            "mysql://root@db:3306/aic?prefer_socket=false",
            "host=db user=x dbname=password",
        ] {
            assert!(!url_has_password(url), "{url}");
            assert_eq!(redact_url(url), url);
        }
    }
}

//! Secrets: read only from the environment, never printed.
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

/// A URL with any password replaced by `***` (`scheme://user:***@host/db`). Key=value
/// connection strings get their `password=` value replaced the same way.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when a URL (or key=value string) carries a password.
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
}

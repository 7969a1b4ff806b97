//! Compiler-style diagnostics for the YAML files users write (pipeline config, mappings).
//!
//! Every problem found in a file is reported as `path:line:column: error: message`, and a
//! check collects all of them before anything runs. Messages name the key or field; they
//! never echo secrets.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem at one place in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it (relative paths stay relative).
    pub path: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong, naming the key or field.
    pub message: String,
}

impl Diagnostic {
    /// A problem at a place.
    pub fn at(path: &Path, line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with the file as a whole (unreadable, missing).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::at(path, 0, 0, message)
    }
}

impl Diagnostic {
    /// The same place and message as a warning line (`path:line:column: warning: …`).
    pub fn as_warning(&self) -> String {
        self.to_string().replacen(": error: ", ": warning: ", 1)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// All problems found in one or more files; an error when not empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends all of another's.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when empty, else `Err(self)`, sorted by file and place.
    pub fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            self.0
                .sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::at(
            Path::new("mappings/aic/x.yaml"),
            3,
            5,
            "unknown field `nmae`",
        );
        assert_eq!(
            d.to_string(),
            "mappings/aic/x.yaml:3:5: error: unknown field `nmae`"
        );
        let f = Diagnostic::file(Path::new("p.yaml"), "cannot read");
        assert_eq!(f.to_string(), "p.yaml: error: cannot read");
    }

    #[test]
    fn sorted_by_place() {
        let mut ds = Diagnostics::default();
        ds.push(Diagnostic::at(Path::new("b.yaml"), 1, 1, "x"));
        ds.push(Diagnostic::at(Path::new("a.yaml"), 9, 1, "y"));
        ds.push(Diagnostic::at(Path::new("a.yaml"), 2, 1, "z"));
        let err = ds.into_result(()).expect_err("has errors");
        let order: Vec<_> = err.0.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(order, ["z", "y", "x"]);
    }
}

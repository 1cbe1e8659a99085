//! Configuration: raw serde types (`raw`), compiled into typed values
//! (`model`) with every error located (`compile`, `locate`), the file
//! watcher that reloads it (`watch`), and the effective config written back
//! out as YAML (`effective`).

pub mod changes;
mod compile;
pub mod effective;
mod locate;
pub mod model;
mod raw;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// One problem in a config file, at a place a person can jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place (the file could not be read).
    pub line: usize,
    /// 1-based.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // No place in the file (it could not be read).
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl ConfigError {
    /// As a warning: `FILE:LINE:COLUMN: warning: message`.
    pub fn warning(&self) -> String {
        let mut w = self.clone();
        w.message = format!("warning: {}", self.message);
        w.to_string()
    }
}

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses, validates and compiles the config at `path`.
pub fn load(path: &Path, generation: u64) -> Result<Compiled, ConfigErrors> {
    let text = read(path)?;
    compile_str(path, &text, generation)
}

/// SHA-256 of a config file's text, in hex: what `/status` shows, and how
/// a reload recognises text it already serves.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The config file's text, or the error that names the file (and, for
/// bytes that are not UTF-8, the line and column of the first one).
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    let error = |line, column, message| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line,
            column,
            message,
        }])
    };
    let bytes = std::fs::read(path).map_err(|e| error(0, 0, format!("cannot read config: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let good = &e.as_bytes()[..bad];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters, as the YAML errors do.
        let column = 1 + String::from_utf8_lossy(&good[line_start..]).chars().count();
        error(
            line,
            column,
            format!(
                "not UTF-8: byte 0x{:02x} at offset {bad}",
                e.as_bytes()[bad]
            ),
        )
    })
}

/// As `load`, from text already read. `path` names the file in errors and
/// anchors relative `ca_file` paths.
pub fn compile_str(path: &Path, text: &str, generation: u64) -> Result<Compiled, ConfigErrors> {
    compile::compile(path, text, generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, b"version: 1\nconsumer: caf\xe9\n").expect("write");
        let e = read(&path).expect_err("not UTF-8");
        assert_eq!((e.0[0].line, e.0[0].column), (2, 14), "{e}");
        assert!(
            e.to_string().contains("c.yaml:2:14: not UTF-8: byte 0xe9"),
            "{e}"
        );
    }
}

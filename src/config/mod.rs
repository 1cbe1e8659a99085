//! Configuration: raw serde types (`raw`), compiled into typed values
//! (`model`) with every error located (`compile`, `locate`), the file
//! watcher that reloads it (`watch`), and the effective config written back
//! out as YAML (`effective`).

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

/// The config file's text, or the error that names the file.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read config: {e}"),
        }])
    })
}

/// As `load`, from text already read. `path` names the file in errors and
/// anchors relative `ca_file` paths.
pub fn compile_str(path: &Path, text: &str, generation: u64) -> Result<Compiled, ConfigErrors> {
    compile::compile(path, text, generation)
}

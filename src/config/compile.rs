//! stub (being written)
use std::path::Path;
use super::{Compiled, ConfigErrors, ConfigError};
use crate::state::StateRegistry;
pub fn compile(path: &Path, _text: &str, _registry: &StateRegistry, _generation: u64) -> Result<Compiled, ConfigErrors> {
    Err(ConfigErrors(vec![ConfigError { file: path.to_owned(), line: 1, column: 1, message: "stub".into() }]))
}

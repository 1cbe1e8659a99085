//! Finds where a JSON pointer's node is written in a JSON text (line and
//! column), so an error jsonschema reports at a pointer into a schema can
//! be shown as `SCHEMA_FILE:LINE:COLUMN: message`.
//!
//! serde_json keeps no positions in a `Value`, so the text is scanned again,
//! tracking the path, until the node is reached. The text is one serde_json
//! already parsed; a text that is not JSON gives `None`, never a panic.

/// The 1-based line and column (in characters) where the value at
/// `pointer` (RFC 6901, `""` for the whole document) starts in `text`.
/// A key that appears twice resolves to its last use, as serde_json keeps
/// the last. `None` when the text has no such node.
pub(super) fn locate_pointer(text: &str, pointer: &str) -> Option<(usize, usize)> {
    let segments: Vec<String> = if pointer.is_empty() {
        Vec::new()
    } else {
        pointer
            .strip_prefix('/')?
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        at: 0,
    };
    let offset = scanner.find(&segments)?;
    Some(line_column(text, offset))
}

/// The 1-based line and character column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = 1 + String::from_utf8_lossy(&before[start..]).chars().count();
    (line, column)
}

/// serde_json's column counts bytes; ours (and the YAML errors') count
/// characters. The character column of byte column `column` on `line`.
pub(super) fn char_column(text: &str, line: usize, column: usize) -> usize {
    let Some(line_text) = text.split('\n').nth(line.saturating_sub(1)) else {
        return column;
    };
    let bytes = column.saturating_sub(1).min(line_text.len());
    1 + String::from_utf8_lossy(&line_text.as_bytes()[..bytes])
        .chars()
        .count()
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Scanner<'_> {
    /// At the start of a value (whitespace allowed): the byte offset where
    /// the node `path` below it starts, if there is one. The scanner is
    /// left after the value either way, so a caller can go on scanning.
    fn find(&mut self, path: &[String]) -> Option<usize> {
        self.skip_ws();
        let start = self.at;
        let Some((first, rest)) = path.split_first() else {
            self.skip_value()?;
            return Some(start);
        };
        match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut found = None;
                loop {
                    self.skip_ws();
                    match self.bytes.get(self.at)? {
                        b'}' => {
                            self.at += 1;
                            return found;
                        }
                        b',' => self.at += 1,
                        _ => {
                            let key = self.string()?;
                            self.skip_ws();
                            if self.bytes.get(self.at) != Some(&b':') {
                                return None;
                            }
                            self.at += 1;
                            if &key == first {
                                // A later duplicate replaces an earlier one.
                                found = self.find(rest).or(found);
                            } else {
                                self.skip_ws();
                                self.skip_value()?;
                            }
                        }
                    }
                }
            }
            b'[' => {
                // RFC 6901: an index is digits with no leading zero.
                let digits = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
                let wanted: Option<usize> = match first.as_str() {
                    "0" => Some(0),
                    s if digits && !s.starts_with('0') => s.parse().ok(),
                    _ => None,
                };
                self.at += 1;
                let (mut index, mut found) = (0, None);
                loop {
                    self.skip_ws();
                    match self.bytes.get(self.at)? {
                        b']' => {
                            self.at += 1;
                            return found;
                        }
                        b',' => {
                            self.at += 1;
                            index += 1;
                        }
                        _ if Some(index) == wanted => found = self.find(rest),
                        _ => self.skip_value()?,
                    }
                }
            }
            _ => {
                // A scalar has no children.
                self.skip_value()?;
                None
            }
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips the value starting here (no leading whitespace).
    fn skip_value(&mut self) -> Option<()> {
        match self.bytes.get(self.at)? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                // Brackets inside strings are skipped with the strings.
                let mut depth = 0usize;
                loop {
                    match self.bytes.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                // A number, true, false or null.
                while !matches!(
                    self.bytes.get(self.at),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// Reads the string starting here, escapes decoded.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        loop {
            match self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "type": "object",
  "properties": {
    "id": { "type": "string" },
    "a/b": { "minimum": "x" },
    "t~n": [1, {"k": true}],
    "quo\"te": null,
    "caf\u00e9": 5,
    "nest": { "x": "}]\"", "y": [ [0], [1, 2] ] }
  }
}"#;

    #[test]
    fn the_root_and_nested_keys_are_found() {
        assert_eq!(locate_pointer(DOC, ""), Some((1, 1)));
        assert_eq!(locate_pointer(DOC, "/type"), Some((2, 11)));
        assert_eq!(locate_pointer(DOC, "/properties/id"), Some((4, 11)));
        assert_eq!(locate_pointer(DOC, "/properties/id/type"), Some((4, 21)));
    }

    #[test]
    fn escaped_keys_and_pointer_escapes_are_decoded() {
        assert_eq!(
            locate_pointer(DOC, "/properties/a~1b/minimum"),
            Some((5, 25))
        );
        assert_eq!(locate_pointer(DOC, "/properties/t~0n/1/k"), Some((6, 22)));
        assert_eq!(locate_pointer(DOC, "/properties/quo\"te"), Some((7, 16)));
        assert_eq!(locate_pointer(DOC, "/properties/café"), Some((8, 18)));
    }

    #[test]
    fn arrays_and_brackets_in_strings_are_walked() {
        assert_eq!(locate_pointer(DOC, "/properties/t~0n/0"), Some((6, 13)));
        assert_eq!(locate_pointer(DOC, "/properties/nest/y"), Some((9, 33)));
        assert_eq!(locate_pointer(DOC, "/properties/nest/y/1/1"), Some((9, 44)));
        assert_eq!(locate_pointer(DOC, "/properties/nest/y/2"), None);
        assert_eq!(locate_pointer(DOC, "/properties/nest/y/01"), None);
        assert_eq!(locate_pointer(DOC, "/properties/missing"), None);
        assert_eq!(locate_pointer(DOC, "/type/deeper"), None);
        assert_eq!(locate_pointer(DOC, "no-slash"), None);
    }

    #[test]
    fn a_repeated_key_is_its_last_use_and_broken_text_is_none() {
        assert_eq!(locate_pointer(r#"{"a": 1, "a": 2}"#, "/a"), Some((1, 15)));
        assert_eq!(locate_pointer(r#"{"a": [1, 2"#, "/a/5"), None);
        assert_eq!(locate_pointer(r#"{"a"#, "/a"), None);
    }

    #[test]
    fn byte_columns_become_character_columns() {
        let text = "{\n  \"é\": x\n}";
        // serde_json says byte column 9 for `x`; it is the 8th character.
        assert_eq!(char_column(text, 2, 9), 8);
        assert_eq!(char_column(text, 9, 4), 4);
        assert_eq!(line_column(text, 10), (2, 8));
        assert_eq!(locate_pointer(text, ""), Some((1, 1)));
    }
}

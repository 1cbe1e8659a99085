//! Finds where a node of the config file is written (line and column), so
//! every problem can be reported as `FILE:LINE:COLUMN: message`.
//!
//! serde_yaml keeps no positions in a `Value`, but it stamps an error raised
//! while deserializing a node with that node's position. So to find a node we
//! deserialize the text again with a seed that walks down the path, skipping
//! everything else, and fails on purpose at the node: the error's location is
//! the node's.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ConfigError;

/// One step from a node to a child.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Where a node sits in the document, e.g. `routes[1].batch.timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct YamlPath(Vec<Seg>);

impl YamlPath {
    pub(super) fn root() -> YamlPath {
        YamlPath(Vec::new())
    }

    pub(super) fn key(&self, key: &str) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub(super) fn index(&self, i: usize) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    fn parent(&self) -> Option<YamlPath> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Whether to point at a map entry's key (an unknown key) or at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Key,
    Value,
}

/// A problem found before positions are known.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub path: YamlPath,
    pub target: Target,
    pub message: String,
}

/// Every problem found in one file, in the order found.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, path: &YamlPath, target: Target, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.clone(),
            target,
            message: message.into(),
        });
    }

    /// Whether a problem was already reported at exactly this node (so a
    /// value dropped for being the wrong kind is not reported missing too).
    pub(super) fn reported_at(&self, path: &YamlPath) -> bool {
        self.0.iter().any(|p| &p.path == path)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// Places every problem in `text` and sorts them in file order.
    pub(super) fn into_errors(self, file: &Path, text: &str) -> Vec<ConfigError> {
        let mut errors: Vec<ConfigError> = self
            .0
            .into_iter()
            .map(|p| {
                let (line, column) = locate(text, &p.path, p.target);
                ConfigError {
                    file: file.to_owned(),
                    line,
                    column,
                    message: p.message,
                }
            })
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        // A node shared through a YAML alias is checked once per use.
        errors.dedup();
        errors
    }
}

/// The 1-based line and column of the node at `path` (its key or its value).
/// A node that cannot be found (it was never written, e.g. a missing key)
/// is placed at its nearest written ancestor, else at 1:1.
pub(super) fn locate(text: &str, path: &YamlPath, target: Target) -> (usize, usize) {
    if let Some(at) = probe(text, &path.0, target) {
        return at;
    }
    let mut up = path.parent();
    while let Some(p) = up {
        if let Some(at) = probe(text, &p.0, Target::Value) {
            return at;
        }
        up = p.parent();
    }
    (1, 1)
}

/// Marks the error raised on purpose at the target, to tell it from any other.
const FOUND: &str = "cutover-locate-found-node";

fn probe(text: &str, path: &[Seg], target: Target) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Probe { path, target }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

/// Walks to `path` and fails there. `Ok(())` means the path is not in the
/// document.
struct Probe<'p> {
    path: &'p [Seg],
    target: Target,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            de.deserialize_any(Found)
        } else {
            de.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (Some(Seg::Key(want)), rest) = (self.path.first(), &self.path[1..]) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let fail_on_key = rest.is_empty() && self.target == Target::Key;
        while let Some(matched) = map.next_key_seed(KeyProbe {
            want,
            fail: fail_on_key,
        })? {
            if matched {
                map.next_value_seed(Probe {
                    path: rest,
                    target: self.target,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (Some(Seg::Index(want)), rest) = (self.path.first(), &self.path[1..]) else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            let found = if i == *want {
                seq.next_element_seed(Probe {
                    path: rest,
                    target: self.target,
                })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if found.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    // A scalar where the path goes deeper: not found.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads one map key: `Ok(true)` when it is the wanted one, or the planted
/// error when the key itself is the target.
struct KeyProbe<'p> {
    want: &'p str,
    fail: bool,
}

impl KeyProbe<'_> {
    fn check<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        match key == self.want {
            true if self.fail => Err(E::custom(FOUND)),
            matched => Ok(matched),
        }
    }
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&serde_yaml::Number::from(v).to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.check("~")
    }
}

/// Fails on whatever node it is given, so the error carries that node's position.
struct Found;

impl<'de> Visitor<'de> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    // A tagged node (`!tag value`).
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

/// Where the first repeated key of a map is written. serde_yaml rejects
/// such a file but places the error at the start of the map.
pub(super) fn duplicate_key(text: &str) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    match DuplicateProbe.deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// Walks the whole document; fails at the first key seen twice in a map.
struct DuplicateProbe;

impl<'de> DeserializeSeed<'de> for DuplicateProbe {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateProbe {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Vec::new();
        while let Some(key) = map.next_key_seed(NewKey { seen: &seen })? {
            seen.push(key);
            map.next_value_seed(DuplicateProbe)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(DuplicateProbe)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads a map key as text, failing if it was `seen` already.
struct NewKey<'s> {
    seen: &'s [String],
}

impl NewKey<'_> {
    fn check<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.seen.contains(&key) {
            Err(E::custom(FOUND))
        } else {
            Ok(key)
        }
    }
}

impl<'de> DeserializeSeed<'de> for NewKey<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NewKey<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.check("~".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segs: &[&str]) -> YamlPath {
        let mut p = YamlPath::root();
        for s in segs {
            p = match s.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(s),
            };
        }
        p
    }

    const BLOCK: &str = "\
version: 1
routes:
  - name: a
    batch: http://x/
  - name: b
    batch:
      url: http://y/
      timout: 2s
    methods:
      - GET
      - POST
";

    #[test]
    fn finds_values_in_block_style() {
        assert_eq!(locate(BLOCK, &path(&["version"]), Target::Value), (1, 10));
        assert_eq!(
            locate(BLOCK, &path(&["routes", "0", "batch"]), Target::Value),
            (4, 12)
        );
        assert_eq!(
            locate(BLOCK, &path(&["routes", "1", "name"]), Target::Value),
            (5, 11)
        );
        assert_eq!(
            locate(
                BLOCK,
                &path(&["routes", "1", "batch", "url"]),
                Target::Value
            ),
            (7, 12)
        );
        assert_eq!(
            locate(
                BLOCK,
                &path(&["routes", "1", "methods", "1"]),
                Target::Value
            ),
            (11, 9)
        );
    }

    #[test]
    fn finds_keys() {
        assert_eq!(
            locate(
                BLOCK,
                &path(&["routes", "1", "batch", "timout"]),
                Target::Key
            ),
            (8, 7)
        );
        assert_eq!(locate(BLOCK, &path(&["routes"]), Target::Key), (2, 1));
    }

    #[test]
    fn finds_maps_and_sequences_themselves() {
        // A map is placed at its first key, an item at its dash's content.
        assert_eq!(
            locate(BLOCK, &path(&["routes", "1"]), Target::Value),
            (5, 5)
        );
        assert_eq!(
            locate(BLOCK, &path(&["routes", "1", "batch"]), Target::Value),
            (7, 7)
        );
    }

    #[test]
    fn finds_nodes_in_flow_style() {
        let text = "routes: [{name: a, batch: {url: 'http://x/', timeout: 5}}, {name: b}]\n";
        assert_eq!(
            locate(text, &path(&["routes", "1", "name"]), Target::Value),
            (1, 67)
        );
        assert_eq!(
            locate(
                text,
                &path(&["routes", "0", "batch", "timeout"]),
                Target::Value
            ),
            (1, 55)
        );
        assert_eq!(
            locate(
                text,
                &path(&["routes", "0", "batch", "timeout"]),
                Target::Key
            ),
            (1, 46)
        );
    }

    #[test]
    fn missing_nodes_fall_back_to_the_nearest_ancestor() {
        assert_eq!(
            locate(
                BLOCK,
                &path(&["routes", "0", "match", "path_prefix"]),
                Target::Value
            ),
            (3, 5)
        );
        assert_eq!(
            locate(BLOCK, &path(&["routes", "9"]), Target::Value),
            (3, 3)
        );
        assert_eq!(locate(BLOCK, &path(&["consumer"]), Target::Key), (1, 1));
        assert_eq!(locate("", &path(&["consumer"]), Target::Key), (1, 1));
    }

    #[test]
    fn finds_tagged_nodes() {
        let text = "a:\n  b: !tag x\n";
        assert_eq!(locate(text, &path(&["a", "b"]), Target::Value), (2, 6));
    }

    #[test]
    fn finds_the_repeated_key() {
        let text = "a: 1\nb:\n  - c: 1\n    d: 2\n    c: 3\n";
        assert_eq!(duplicate_key(text), Some((5, 5)));
        assert_eq!(duplicate_key("a: 1\nb: {a: 1}\n"), None);
    }

    #[test]
    fn paths_print_like_the_document() {
        assert_eq!(
            path(&["routes", "1", "batch", "timeout"]).to_string(),
            "routes[1].batch.timeout"
        );
    }
}

//! Gate trips kept across restarts (`state_file`): a small JSON document,
//! rewritten atomically (a temp file in the same directory, then a rename)
//! whenever the set of tripped gates changes, and read once at start. A file
//! that cannot be read or parsed is logged and treated as empty: it never
//! stops cutover from serving.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Check, Trip};
use crate::config::{Gate, Mode};
use crate::state::live::{Live, Snapshot};

/// The document's format version.
const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub version: u32,
    pub tripped: Vec<SavedTrip>,
}

/// One tripped gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTrip {
    pub consumer: String,
    pub route: String,
    pub dataset: String,
    /// The compiled mode and gate the trip happened under: it is restored
    /// only while the config still says exactly this (an edit re-arms).
    pub armed_for: SavedGate,
    pub check: String,
    /// `None` when the value was not a number.
    pub value: Option<f64>,
    pub threshold: f64,
    /// RFC 3339.
    pub at: String,
}

/// A route's compiled `mode` and `gate`, as plain values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGate {
    pub mode: String,
    pub interval_ms: u64,
    pub window_ms: u64,
    pub failures: u32,
    pub min_reads: u64,
    pub max_error_ratio_delta: Option<f64>,
    pub max_fallback_ratio: Option<f64>,
    pub max_divergence_ratio: Option<f64>,
    pub max_streaming_age_ms: Option<u64>,
    /// Absent in files written before contracts (1.2): none.
    #[serde(default)]
    pub max_contract_violation_ratio: Option<f64>,
    pub rollback_to: String,
}

impl SavedGate {
    pub fn new(mode: Mode, gate: &Gate) -> SavedGate {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        SavedGate {
            mode: mode.as_str().to_owned(),
            interval_ms: ms(gate.interval),
            window_ms: ms(gate.window),
            failures: gate.failures,
            min_reads: gate.min_reads,
            max_error_ratio_delta: gate.max_error_ratio_delta,
            max_fallback_ratio: gate.max_fallback_ratio,
            max_divergence_ratio: gate.max_divergence_ratio,
            max_streaming_age_ms: gate.max_streaming_age.map(ms),
            max_contract_violation_ratio: gate.max_contract_violation_ratio,
            rollback_to: gate.rollback_to.as_str().to_owned(),
        }
    }
}

/// Why the state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is not a cutover state document: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state file {path} has version {version}; this cutover reads version {VERSION}")]
    Version { path: PathBuf, version: u32 },
}

/// The trips in the file at `path`; none when there is no file yet.
pub fn load(path: &Path) -> Result<Vec<SavedTrip>, LoadError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoadError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let doc: StateDoc = serde_json::from_slice(&text).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if doc.version != VERSION {
        return Err(LoadError::Version {
            path: path.to_owned(),
            version: doc.version,
        });
    }
    Ok(doc.tripped)
}

/// Writes `tripped` to `path` atomically: readers (and a crash) see the old
/// file or the new one, never half of one.
pub fn save(path: &Path, tripped: &[SavedTrip]) -> std::io::Result<()> {
    let doc = StateDoc {
        version: VERSION,
        tripped: tripped.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Every tripped gate of the snapshot, as the file keeps it.
pub fn tripped(snap: &Snapshot) -> Vec<SavedTrip> {
    snap.routes
        .iter()
        .filter_map(|r| {
            let gate = r.config.gate.as_ref()?;
            let trip = r.state.gate.trip()?;
            Some(SavedTrip {
                consumer: snap.settings.consumer.clone(),
                route: r.config.name.clone(),
                dataset: r.config.dataset.clone(),
                armed_for: SavedGate::new(r.config.mode, gate),
                check: trip.check.as_str().to_owned(),
                value: trip.value.is_finite().then_some(trip.value),
                threshold: trip.threshold,
                at: crate::decide::freshness::rfc3339(trip.at).unwrap_or_default(),
            })
        })
        .collect()
}

/// What was last written, and where.
pub type Saved = Option<(PathBuf, Vec<SavedTrip>)>;

/// Rewrites the file when the tripped gates (or the file's path, after a
/// reload) differ from what was last written (`saved`; `None` before the
/// first write, so a stale or corrupt file is replaced at start). A failure
/// is logged once per change.
pub fn save_if_changed(path: &Path, snap: &Snapshot, saved: &mut Saved) {
    let now = tripped(snap);
    if saved
        .as_ref()
        .is_some_and(|(p, trips)| p == path && *trips == now)
    {
        return;
    }
    match save(path, &now) {
        Ok(()) => tracing::debug!(path = %path.display(), tripped = now.len(), "gate state saved"),
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            "cannot write the gate state file: a restart will forget these trips"
        ),
    }
    *saved = Some((path.to_owned(), now));
}

/// At start: trips the gates the state file says were tripped, where the
/// route's mode and gate are still what they were. A file that cannot be
/// used is logged and ignored.
pub fn restore(live: &Live) {
    let snap = live.snapshot.load();
    let Some(path) = &snap.settings.state_file else {
        return;
    };
    let path = &live.data_dir.join(path);
    let saved = match load(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "gate state file ignored: every gate starts armed");
            return;
        }
    };
    for s in saved {
        let Some(route) = snap.routes.iter().find(|r| {
            r.config.name == s.route
                && r.config.dataset == s.dataset
                && snap.settings.consumer == s.consumer
        }) else {
            continue;
        };
        let Some(gate) = &route.config.gate else {
            continue;
        };
        if SavedGate::new(route.config.mode, gate) != s.armed_for {
            tracing::info!(route = %s.route, "gate re-armed: its mode or gate changed since the trip the state file records");
            continue;
        }
        let (Some(check), Some(at)) = (Check::parse(&s.check), parse_time(&s.at)) else {
            tracing::warn!(route = %s.route, "gate state file entry ignored: unknown check or time");
            continue;
        };
        let trip = Trip {
            check,
            value: s.value.unwrap_or(f64::NAN),
            threshold: s.threshold,
            at,
        };
        if route.state.gate.restore(route.config.mode, gate, trip) {
            tracing::warn!(
                route = %s.route,
                check = %s.check,
                tripped_at = %s.at,
                rollback_to = gate.rollback_to.as_str(),
                "gate still tripped (from the state file): edit the route's mode or gate to re-arm it"
            );
        }
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_document_loads_back_and_no_file_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/state.json");
        assert_eq!(load(&path).expect("no file is fine"), []);
        let trip = SavedTrip {
            consumer: "c".into(),
            route: "orders".into(),
            dataset: "orders".into(),
            armed_for: SavedGate {
                mode: "streaming".into(),
                interval_ms: 100,
                window_ms: 1000,
                failures: 3,
                min_reads: 10,
                max_error_ratio_delta: None,
                max_fallback_ratio: Some(0.1 + 0.2),
                max_divergence_ratio: None,
                max_streaming_age_ms: Some(600_000),
                max_contract_violation_ratio: None,
                rollback_to: "batch".into(),
            },
            check: "fallback_ratio".into(),
            value: Some(0.7),
            threshold: 0.1 + 0.2,
            at: "2026-01-02T03:04:05.5Z".into(),
        };
        save(&path, std::slice::from_ref(&trip)).expect("saves");
        assert_eq!(load(&path).expect("loads"), [trip]);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["state.json"], "no temp file is left behind");
        assert!(parse_time("2026-01-02T03:04:05.5Z").is_some());
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").expect("write");
        assert!(matches!(load(&path), Err(LoadError::Parse { .. })));
        std::fs::write(&path, r#"{"version":9,"tripped":[]}"#).expect("write");
        assert!(matches!(load(&path), Err(LoadError::Version { .. })));
        assert!(matches!(load(dir.path()), Err(LoadError::Read { .. })));
    }
}

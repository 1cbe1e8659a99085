//! `cutover diff` through the real binary: exit 0 when two files match
//! (or differ only in timing the watermarks explain), 1 when they diverge, 2
//! on bad input.

use super::*;

/// Runs `cutover diff` (bounded) and returns its exit code, stdout and stderr.
fn diff(args: &[&str]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("diff")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover diff");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_exit(
        &mut child,
        &format!("cutover diff {args:?} exits"),
        String::new,
    );
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().expect("temp dir"))
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8 path").to_owned()
    }
}

#[test]
fn diff_identical_files_match() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[B1, B2, B3]));
    let (code, out, err) = diff(&[&b, &s]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("match"), "{out}");
    // Bytes that are not JSON compare as bytes.
    let g1 = f.write("g1.bin", "not json at all");
    let g2 = f.write("g2.bin", "not json at all");
    let g3 = f.write("g3.bin", "not json either");
    assert_eq!(diff(&[&g1, &g2]).0, Some(0));
    let (code, out, _) = diff(&[&g1, &g3]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("body"), "{out}");
}

#[test]
fn diff_reordered_records_match_only_with_a_key() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S3, S1, S2]));
    let (code, out, err) = diff(&[
        &b,
        &s,
        "--records",
        "/data",
        "--key",
        "id",
        "--ignore",
        "ingested_at",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rows: batch 3, streaming 3"), "{out}");
    assert!(out.contains("match"), "{out}");
    let (code, out, err) = diff(&[&b, &s, "--records", "/data", "--ignore", "ingested_at"]);
    assert_eq!(code, Some(1), "without a key order matters: {out}{err}");
    assert!(out.contains("diverged"), "{out}");
    // With the key but without ignoring `ingested_at`, every record differs.
    let (code, out, _) = diff(&[&b, &s, "--records", "/data", "--key", "id"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("aggregate  3"), "{out}");
    assert!(out.contains("field=ingested_at"), "{out}");
}

#[test]
fn diff_shows_missing_and_extra() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S1, S2, S4]));
    let (code, out, err) = diff(&[
        &b,
        &s,
        "--records",
        "/data",
        "--key",
        "id",
        "--ignore",
        "ingested_at",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("missing    1"), "{out}");
    assert!(out.contains("extra      1"), "{out}");
    assert!(out.contains("missing key=3"), "{out}");
    assert!(out.contains("extra key=4"), "{out}");
    assert!(
        out.contains("\"amount\":300"),
        "batch's value is shown: {out}"
    );
    assert!(
        out.contains("\"amount\":400"),
        "streaming's value is shown: {out}"
    );
}

#[test]
fn diff_numeric_tolerance_is_relative_and_inclusive() {
    let f = Files::new();
    let b = f.write("b.json", r#"[{"id":1,"v":100}]"#);
    let s = f.write("s.json", r#"[{"id":1,"v":200}]"#);
    // |100 - 200| = 100 = 0.5 * max(100, 200): exactly at the tolerance.
    let (code, out, err) = diff(&[&b, &s, "--key", "id", "--numeric-tolerance", "0.5"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = diff(&[&b, &s, "--key", "id", "--numeric-tolerance", "0.49"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("aggregate key=1 field=v"), "{out}");
    let (code, out, _) = diff(&[&b, &s, "--key", "id"]);
    assert_eq!(code, Some(1), "no tolerance by default: {out}");
}

#[test]
fn diff_timing_explained_by_watermarks_exits_zero() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S1, S2, S3, S5_LATE]));
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            b.as_str(),
            s.as_str(),
            "--records",
            "/data",
            "--key",
            "id",
            "--ignore",
            "ingested_at",
            "--event-time",
            "ts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        diff(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out, err) = run(&[
        "--batch-watermark",
        BATCH_WM,
        "--streaming-watermark",
        STREAMING_WM,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("timing"), "{out}");
    assert!(out.contains("timing key=5"), "{out}");
    // Unix seconds work too: 2024-05-01T09:00:00Z.
    let (code, out, err) = run(&["--batch-watermark", "1714554000"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("timing"), "{out}");
    // Without watermarks the same record is a real extra.
    let (code, out, _) = run(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("extra key=5"), "{out}");
}

#[test]
fn diff_bad_input_exits_two() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1]));
    let missing = f.0.path().join("nope.json");
    let missing = missing.to_str().unwrap();
    let (code, out, err) = diff(&[&b, missing]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("nope.json"), "names the file: {err}");
    let (code, _, err) = diff(&[missing, &b]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = diff(&[&b, &b, "--batch-watermark", "yesterday"]);
    assert_eq!(code, Some(2), "bad watermark: {err}");
    let (code, _, err) = diff(&[&b, &b, "--numeric-tolerance", "-1"]);
    assert_eq!(code, Some(2), "negative tolerance: {err}");
    // A records pointer that finds nothing on either side is a mistake in
    // the command, not a comparison of whole bodies.
    let (code, out, err) = diff(&[&b, &b, "--records", "/wrong", "--key", "id"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("/wrong"), "names the pointer: {err}");
    assert!(out.is_empty(), "no report: {out}");
}

//! `cutover check`: validates a config as `nginx -t` does, without serving.

use std::path::{Path, PathBuf};

use super::Exit;

/// `cutover check`: 0 and a one-line summary, or 1 with every error as
/// `FILE:LINE:COLUMN: message`.
pub fn check(path: &Path, data_dir: &Path) -> Exit {
    // `-` is standard input: errors name it `<stdin>`, and relative paths in
    // it (ca_file) start at the working directory.
    let stdin = path.as_os_str() == "-";
    let (name, text) = if stdin {
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("<stdin>: cannot read config: {e}");
            return Exit::Failure;
        }
        (PathBuf::from("<stdin>"), text)
    } else {
        match crate::config::read(path) {
            Ok(text) => (path.to_owned(), text),
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                return Exit::Failure;
            }
        }
    };
    match crate::config::compile_str(&name, &text, 1) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{}", w.warning());
            }
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|r| format!("{} {}", r.name, r.mode.as_str()))
                .collect();
            println!(
                "{}: ok: {} route{} ({}), consumer {}",
                name.display(),
                c.routes.len(),
                if c.routes.len() == 1 { "" } else { "s" },
                routes.join(", "),
                c.settings.consumer
            );
            // Warnings, not errors: the directory may only exist where
            // cutover runs (an emptyDir in the pod).
            for r in &c.routes {
                let logs = [
                    ("divergence_log", r.reconcile.divergence_log.as_ref()),
                    (
                        "contract.dead_letter",
                        r.contract.as_ref().and_then(|k| k.dead_letter.as_ref()),
                    ),
                ];
                for (key, log) in logs {
                    let Some(log) = log else { continue };
                    let at = data_dir.join(log);
                    if let Err(e) = writable(&at) {
                        eprintln!(
                            "{}: warning: route {}: {key} {} is not writable here ({e}); set --data-dir to a writable directory",
                            name.display(),
                            r.name,
                            at.display()
                        );
                    }
                }
            }
            Exit::Success
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            Exit::Failure
        }
    }
}

/// Whether a log could be written at `path`: an existing file opens for
/// appending; otherwise a probe file is created beside it and removed.
fn writable(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".cutover-check-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

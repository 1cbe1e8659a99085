//! `cutover demo` as a user starts it: the real binary on ports the OS
//! picks, its stdout (the guide) read line by line, its log kept and shown
//! when a test fails.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use super::{WAIT, wait_exit};

pub struct Demo {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// The guide's lines read so far.
    pub stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `cutover demo`, in `dir` when given (as from a clone's root).
    pub fn start(dir: Option<&Path>) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.arg("demo")
            .env("CUTOVER_DEMO_PORTS", "ephemeral")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("spawn cutover demo");
        let (tx, lines) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        Demo {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// Reads stdout until a line contains `marker`, within `WAIT`.
    pub fn read_until(&mut self, marker: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stdout.last().is_some_and(|l| l.contains(marker)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!(
                    "no line with {marker:?} within {WAIT:?}; stdout so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// The first word after `prefix` on a guide line.
    pub fn guide_word(&self, prefix: &str) -> String {
        self.stdout
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "a guide line starting {prefix:?}:\n{}",
                    self.stdout.join("\n")
                )
            })
            .to_owned()
    }

    /// Ctrl-C, as a person stops it.
    pub fn interrupt(&self) {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -INT");
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        wait_exit(&mut self.child, "cutover demo exits", String::new).code()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self
                .stderr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "demo stdout:\n{}\ndemo log (last 40 lines):\n{}",
                self.stdout.join("\n"),
                tail.join("\n")
            );
        }
    }
}

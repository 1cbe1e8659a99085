//! `cutover status`: a running cutover's `/status` as a table (or JSON),
//! and an exit code a script can act on.

use super::Exit;

/// `cutover status` (SPEC 1.1): 0 when healthy, 1 when the last reload
/// failed, a gate is tripped or a circuit is open, 2 when the admin
/// endpoint cannot be read.
pub fn status(admin: &str, json: bool) -> Exit {
    let rt = match super::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover status: cannot start the runtime: {e}");
            return Exit::Unusable;
        }
    };
    match rt.block_on(super::status_table::fetch(admin)) {
        Ok(doc) => {
            if json {
                match serde_json::to_string_pretty(&doc) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("cutover status: {e}");
                        return Exit::Unusable;
                    }
                }
            } else {
                print!("{}", super::status_table::render(&doc));
            }
            let problems = doc.problems();
            if problems.is_empty() {
                return Exit::Success;
            }
            for p in &problems {
                eprintln!("cutover status: {p}");
            }
            Exit::Failure
        }
        Err(e) => {
            let hint = e.hint();
            eprintln!("cutover status: {}", super::chain(&e));
            if let Some(hint) = hint {
                eprintln!("  {hint}");
            }
            Exit::Unusable
        }
    }
}

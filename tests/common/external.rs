//! The one rule for tests that need a program from outside the workspace (`redis-server`,
//! Postgres, mosquitto and its clients, a JDK with HdrHistogram): when the program is missing and
//! the `CI` environment variable is set, the test fails, because `.ci/run` installs every one of
//! them; elsewhere the test is skipped and says so on the terminal.
//!
//! The root crate's integration tests use this file as `common::external`; the load generator's
//! tests include the same file with `#[path]`, so both crates follow the same rule. Each test
//! crate uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether a test that needs `what` runs. `found` says whether it is installed; `install` is
/// how to install it (the Debian package). When it is missing the test panics under CI, and
/// elsewhere prints why and returns false so the caller returns early.
#[must_use]
pub fn available(what: &str, found: bool, install: &str) -> bool {
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing and CI is set: `.ci/run` installs it ({install})");
    }
    // Straight to the process's stderr: `eprintln!` output is captured by the test harness and
    // shown only for failing tests, and a skip must be seen. The harness names each test's
    // thread after the test.
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED {test}: {what} is not installed ({install}; `bash .ci/run` installs it)"
    );
    false
}

/// Whether `program` can be started from `PATH` (with `args`, output discarded).
pub fn starts(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

//! `cargo xtask fuzz`: runs the `validate` fuzz target (fuzz/, its own workspace) for a
//! bounded time and fails if the fuzzer finds a crash.
//!
//! Installs cargo-fuzz from crates.io when it is missing. Only a stable toolchain is required: the sanitizer
//! flags cargo-fuzz passes are unlocked with `RUSTC_BOOTSTRAP=1`. The time bound is
//! `BMR_FUZZ_SECONDS` (default 60); crashes land in `fuzz/artifacts/validate/`.

use std::path::PathBuf;
use std::process::Command;

/// Default run time in seconds.
pub const DEFAULT_SECONDS: u64 = 60;

/// Runs the fuzzer; `Err` says what failed (no cargo-fuzz, build failure, or a crash).
pub fn run() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("cannot find the workspace root")?;
    let fuzz_dir = root.join("fuzz");
    let seconds = match std::env::var("BMR_FUZZ_SECONDS") {
        Ok(s) => s
            .parse::<u64>()
            .map_err(|_| format!("BMR_FUZZ_SECONDS is not a number: {s:?}"))?,
        Err(_) => DEFAULT_SECONDS,
    };
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("xtask: installing cargo-fuzz from crates.io");
        crate::run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))
            .map_err(|e| format!("{e}; install it by hand with `cargo install cargo-fuzz`"))?;
    }
    let corpus = fuzz_dir.join("corpus").join("validate");
    let status = Command::new("cargo")
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "validate", "--jobs", "1"])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-dict=validate.dict",
            "-timeout=10",
        ])
        .status()
        .map_err(|e| format!("running cargo fuzz: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the fuzzer failed ({status}); see fuzz/artifacts/validate/ for the crashing input"
        ))
    }
}

//! `cargo xtask package`: the Debian package, built by cargo-deb and checked by lintian.
//!
//! The man page and the completion scripts are printed by the release binary itself
//! (`bitmask-root __generate man|bash|zsh|fish`), from the one definition of the command
//! line, into `target/release/generated/`, where `[package.metadata.deb]` in Cargo.toml picks
//! them up together with the files of `packaging/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo-deb release installed when `cargo deb` is missing or another version; it builds
/// with the project's toolchain (Rust 1.85 or later).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Lintian warnings that stay, each justified in README.md ("Install", "What lintian says").
/// Any other warning, and every error, fails the task.
pub const JUSTIFIED_WARNINGS: &[&str] = &[
    // The package is built for users and Bitmask clients, not uploaded to Debian: there is no
    // ITP bug to close.
    "initial-upload-closes-no-bugs",
];

/// What the binary prints for packaging, and the file name each goes to.
const GENERATED: &[(&str, &str)] = &[
    ("man", "bitmask-root.8"),
    ("bash", "bitmask-root.bash"),
    ("zsh", "_bitmask-root"),
    ("fish", "bitmask-root.fish"),
];

fn cargo_deb_version() -> Option<String> {
    let out = crate::cargo().args(["deb", "--version"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

/// Installs cargo-deb [`CARGO_DEB_VERSION`] from crates.io unless that version is there.
fn ensure_cargo_deb() -> Result<(), String> {
    match cargo_deb_version() {
        Some(v) if v == CARGO_DEB_VERSION => return Ok(()),
        Some(v) => eprintln!("xtask: cargo-deb {v} found; installing {CARGO_DEB_VERSION}"),
        None => eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} (cargo install)"),
    }
    crate::run(crate::cargo().args([
        "install",
        "--locked",
        "--quiet",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
    ]))?;
    match cargo_deb_version() {
        Some(v) if v == CARGO_DEB_VERSION => Ok(()),
        other => Err(format!(
            "cargo-deb {CARGO_DEB_VERSION} was installed but `cargo deb --version` says {other:?}: is ~/.cargo/bin on PATH?"
        )),
    }
}

/// Runs `bin __generate WHAT` into `dir/file`.
fn generate(bin: &Path, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (what, file) in GENERATED {
        let out = Command::new(bin)
            .args(["__generate", what])
            .output()
            .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(format!(
                "{} __generate {what} failed ({}): {}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = dir.join(file);
        std::fs::write(&path, &out.stdout).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // Debian wants man pages compressed, reproducibly (no name, no time stamp).
    let man = dir.join("bitmask-root.8");
    let gz = dir.join("bitmask-root.8.gz");
    let _ = std::fs::remove_file(&gz);
    crate::run(
        Command::new("gzip")
            .args(["-9n", "--force", "--keep"])
            .arg(&man),
    )?;
    if !gz.exists() {
        return Err(format!("gzip did not write {}", gz.display()));
    }
    Ok(())
}

/// Builds the release binary, the generated files and the `.deb`; returns the `.deb`'s path.
pub fn build() -> Result<PathBuf, String> {
    ensure_cargo_deb()?;
    crate::run(crate::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "bitmask-root",
        "--bin",
        "bitmask-root",
    ]))?;
    let release = crate::target_dir().join("release");
    generate(&release.join("bitmask-root"), &release.join("generated"))?;
    let out_dir = crate::target_dir().join("debian");
    let out = crate::cargo()
        .args(["deb", "-p", "bitmask-root", "--no-build", "--output"])
        .arg(&out_dir)
        .output()
        .map_err(|e| format!("could not run cargo deb: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("cargo deb failed ({})", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo deb did not name the package it wrote: {stdout}"))?;
    if !deb.is_file() {
        return Err(format!(
            "cargo deb names {}, which is not there",
            deb.display()
        ));
    }
    Ok(deb)
}

/// Runs lintian on the package; fails on any error, and on any warning not in
/// [`JUSTIFIED_WARNINGS`]. Returns lintian's output.
pub fn lint(deb: &Path) -> Result<String, String> {
    let out = Command::new("lintian")
        .args(["--pedantic", "--display-info", "--no-tag-display-limit"])
        .arg(deb)
        .output()
        .map_err(|e| format!("could not run lintian (Debian package lintian): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code();
    // lintian exits 0, or 2 when it found tags at or above its --fail-on level (errors by
    // default); anything else means it did not run through.
    if !matches!(code, Some(0) | Some(2)) {
        return Err(format!(
            "lintian failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut problems = Vec::new();
    for line in text.lines() {
        let tag = line.split_whitespace().nth(2).unwrap_or("");
        let unjustified = line.starts_with("W:") && !JUSTIFIED_WARNINGS.contains(&tag);
        if line.starts_with("E:") || unjustified {
            problems.push(line.to_string());
        }
    }
    if problems.is_empty() {
        Ok(text)
    } else {
        Err(format!(
            "lintian: {} error(s) or unjustified warning(s):\n{}\n(fix them, or justify a warning in README.md and xtask/src/package.rs)",
            problems.len(),
            problems.join("\n")
        ))
    }
}

/// `cargo xtask package`.
pub fn run() -> Result<(), String> {
    let deb = build()?;
    let report = lint(&deb)?;
    println!("lintian --pedantic --display-info {}:", deb.display());
    print!(
        "{}",
        if report.is_empty() {
            "(nothing)\n"
        } else {
            &report
        }
    );
    println!("package: {}", deb.display());
    Ok(())
}

//! `cargo xtask`: the project's tasks. `cargo xtask help` lists them.

mod bench;
mod demo;
mod deps;
mod fuzz;
mod netns_test;
mod package;
mod package_check;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask TASK

TASKS:
    demo          Build, make a throwaway network namespace topology, start the firewall
                  there, show the ruleset and which probes were blocked or let through, and
                  clean up. Never touches this machine's own network namespace.
    test          Every test: formatting, clippy, unit and doc tests, the package checks (the
                  .deb installed with dpkg -i, checked, purged), and the namespace tests
                  against the real kernel (needs root; installs missing Debian packages).
    netns-test    Only the leak matrix, with its report in docs/leak-matrix.md.
    package       The Debian package (cargo-deb, installed when missing), checked by lintian:
                  target/debian/bitmask-root_VERSION_ARCH.deb.
    package-test  Only the package checks of test: builds the package, installs it into this
                  machine with dpkg -i, checks it, and purges it (needs root).
    bench         Benchmarks against nft -f and the iptables way (docs/bench.md).
    fuzz          Fuzzes the openvpn argument validator for a bounded time.
";

/// Runs a command, failing with its name when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `cargo`, in the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds the binary (debug) and returns its path.
pub fn build_binary() -> Result<PathBuf, String> {
    run(cargo().args([
        "build",
        "--quiet",
        "-p",
        "bitmask-root",
        "--bin",
        "bitmask-root",
    ]))?;
    Ok(target_dir().join("debug").join("bitmask-root"))
}

fn need_root(task: &str) -> Result<(), String> {
    if deps::root() {
        Ok(())
    } else {
        Err(format!(
            "cargo xtask {task} creates network namespaces and needs root: run it as root (sudo -E cargo xtask {task})"
        ))
    }
}

fn test() -> Result<(), String> {
    deps::ensure(&[deps::BUILD, deps::TEST, deps::PACKAGE, deps::PACKAGE_TEST])?;
    need_root("test")?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let bin = build_binary()?;
    // Unit and doc tests of every crate but the namespace harness.
    run(cargo().args(["test", "--workspace", "--exclude", "netns-tests"]))?;
    // The Debian package, installed into this machine and purged again.
    package_check::run()?;
    // The harness's own tests and every namespace test file but the leak matrix's...
    let mut args: Vec<String> = ["test", "-p", "netns-tests", "--lib"]
        .map(String::from)
        .to_vec();
    for name in namespace_test_files()? {
        if !netns_test::MATRIX_FILES.contains(&name.as_str()) {
            args.extend(["--test".to_string(), name]);
        }
    }
    run(cargo().args(&args).env("BITMASK_ROOT_BIN", &bin))?;
    run(cargo()
        .args(["test", "-p", "netns-tests", "--doc"])
        .env("BITMASK_ROOT_BIN", &bin))?;
    // ...which runs last, with its report.
    netns_test::run(&bin)
}

/// The integration test files of netns-tests (without `.rs`).
fn namespace_test_files() -> Result<Vec<String>, String> {
    let dir = root().join("netns-tests").join("tests");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn netns_test_task() -> Result<(), String> {
    deps::ensure(&[deps::BUILD, deps::TEST])?;
    need_root("netns-test")?;
    let bin = build_binary()?;
    netns_test::run(&bin)
}

fn demo() -> Result<(), String> {
    deps::ensure(&[deps::BUILD, &["iproute2", "nftables"]])?;
    need_root("demo")?;
    let bin = build_binary()?;
    demo::run(&bin)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo(),
        Some("netns-test") => netns_test_task(),
        Some("bench") => {
            deps::ensure(&[deps::BUILD, deps::TEST]).and_then(|()| bench::run(&args[1..]))
        }
        Some("fuzz") => deps::ensure(&[deps::BUILD]).and_then(|()| fuzz::run()),
        Some("package-test") => deps::ensure(&[deps::BUILD, deps::PACKAGE, deps::PACKAGE_TEST])
            .and_then(|()| need_root("package-test"))
            .and_then(|()| package_check::run()),
        Some("package") => {
            deps::ensure(&[deps::BUILD, deps::PACKAGE]).and_then(|()| package::run())
        }
        Some("help") | Some("-h") | Some("--help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

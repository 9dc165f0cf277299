//! `cargo xtask bench`: how fast the firewall is applied, replaced, stopped and checked,
//! side by side with what a user would use instead (`nft -f` of the same rules, the original's
//! one-`iptables`-process-per-rule way, `iptables-restore`), with the kernel's own floor, the
//! library call an embedding client pays, the processes each command starts, peak RSS, the
//! binary's size, and the packet rate through the chain at 1 and 10,000 gateways.
//!
//! Everything runs inside a throwaway network namespace (`bmr-bench-PID`, see [`lab`]) that is
//! deleted on every exit path; `BITMASK_ROOT_REQUIRE_NETNS` is set to this machine's namespace
//! so the binary and the library refuse to act there. Results: a table on stdout,
//! `docs/bench.md` and `docs/bench.svg` (with `--quick`: `target/bench-quick/`).
//!
//! Method: every competitor of one gateway count runs once per round, in one process, in an
//! order that is reversed every other round (A B C, C B A, ...), so slow drift of this shared
//! machine hits all of them alike; before each timed run its starting state (clean, our table
//! up, the iptables rules up) is rebuilt the same way. Medians over the rounds after the
//! warm-up rounds; ratios are taken between medians of the same run.

#![deny(unsafe_code)]

mod chart;
mod guard;
mod helper;
mod iptables;
mod lab;
mod proc;
mod report;
mod stats;
mod suite;
#[allow(unsafe_code)]
mod sys;
mod trace;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The command-line options of `cargo xtask bench`.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Measured rounds per gateway count (after warm-up).
    pub runs: usize,
    /// Warm-up rounds, discarded.
    pub warmup: usize,
    /// Gateway counts, IPv4 only.
    pub sizes: Vec<usize>,
    /// Gateway counts of the IPv4/IPv6 mix.
    pub mix_sizes: Vec<usize>,
    /// The largest gateway count for the per-rule iptables way.
    pub iptables_rules_max: usize,
    /// Datagrams per flood, and its time bound in ms.
    pub flood_packets: u64,
    /// See `flood_packets`.
    pub flood_ms: u64,
    /// Rounds of the packet-rate measurement.
    pub flood_rounds: usize,
    /// Where bench.md and bench.svg go.
    pub out: PathBuf,
    /// Whether this is the quick variant.
    pub quick: bool,
    /// Only the guard section (`--guard`).
    pub guard_only: bool,
    /// Rounds per measurement of the guard section.
    pub guard_rounds: usize,
    /// The commit whose binary is the "before" of the comparison (`--before`, `none` for no
    /// comparison).
    pub before: Option<String>,
}

/// The commit of `main` before issue 14 (one socket per command, no C libraries): the
/// default "before" of the comparison.
pub const BEFORE: &str = "0aa8567";

const USAGE: &str = "\
cargo xtask bench [--quick] [--guard] [--runs N] [--warmup N] [--sizes 1,50,...] [--mix-sizes 50,...] [--out DIR]
                  [--before REV|none]

Benchmarks bitmask-root against nft -f and the iptables way, inside throwaway network
namespaces (needs root). Writes docs/bench.md and docs/bench.svg; --quick is a fast check with
fewer runs and sizes, written to target/bench-quick/. About 4 minutes on 2 CPUs, --quick about
half a minute. --before REV (default 0aa8567, the main commit before issue 14) builds that
commit's binary once in target/bench-before/ and compares with it; none skips it. The guard
section (how fast firewall guard repairs its table and re-plans after a network change) runs
last and writes bench-guard.md; --guard runs it alone (a few seconds, --runs sets its rounds).
";

impl Opts {
    fn full() -> Opts {
        Opts {
            runs: 21,
            warmup: 3,
            sizes: vec![1, 50, 1_000, 10_000],
            mix_sizes: vec![50, 1_000, 10_000],
            iptables_rules_max: 50,
            flood_packets: 200_000,
            flood_ms: 1_000,
            flood_rounds: 5,
            out: workspace().join("docs"),
            quick: false,
            guard_only: false,
            guard_rounds: 31,
            before: Some(BEFORE.to_string()),
        }
    }

    fn quick() -> Opts {
        Opts {
            runs: 5,
            warmup: 1,
            sizes: vec![1, 50, 10_000],
            mix_sizes: vec![1_000],
            iptables_rules_max: 1,
            flood_packets: 30_000,
            flood_ms: 300,
            flood_rounds: 2,
            out: target_dir().join("bench-quick"),
            quick: true,
            guard_only: false,
            guard_rounds: 11,
            before: Some(BEFORE.to_string()),
        }
    }

    /// Parses the arguments after `bench`.
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = if args.iter().any(|a| a == "--quick") {
            Opts::quick()
        } else {
            Opts::full()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("{a} needs a value\n\n{USAGE}"))
            };
            match a.as_str() {
                "--quick" => {}
                "--guard" => o.guard_only = true,
                "--runs" => {
                    o.runs = number(value()?)?.max(1);
                    o.guard_rounds = o.runs;
                }
                "--warmup" => o.warmup = number(value()?)?,
                "--sizes" => o.sizes = list(value()?)?,
                "--mix-sizes" => o.mix_sizes = list(value()?)?,
                "--out" => o.out = PathBuf::from(value()?),
                "--before" => {
                    let v = value()?;
                    o.before = (v != "none").then(|| v.clone());
                }
                other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
            }
        }
        if o.sizes.is_empty() {
            return Err("--sizes needs at least one gateway count".into());
        }
        Ok(o)
    }
}

fn number(s: &str) -> Result<usize, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))
}

fn list(s: &str) -> Result<Vec<usize>, String> {
    let v: Vec<usize> = s
        .split(',')
        .filter(|w| !w.is_empty())
        .map(number)
        .collect::<Result<_, _>>()?;
    if let Some(bad) = v.iter().find(|&&n| n == 0 || n > 16_384) {
        return Err(format!("gateway count {bad} is out of range (1 to 16384)"));
    }
    Ok(v)
}

/// The workspace root (the parent of `xtask/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The release binary and helper built for the bench.
#[derive(Debug, Clone)]
pub struct Built {
    /// `target/release/bitmask-root`.
    pub bin: PathBuf,
    /// `target/release/examples/bench_lib`.
    pub helper: PathBuf,
    /// `target/release/examples/bench_guard`.
    pub guard_helper: PathBuf,
    /// A Rust program that only exits, built with the same release profile: the floor of a
    /// process start.
    pub floor: PathBuf,
    /// The "before" binary and its commit, when one was asked for and could be built.
    pub before: Option<(String, PathBuf)>,
}

/// Builds the binary and the helper in release mode, the process floor, and the "before".
fn build(opts: &Opts) -> Result<Built, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: building bitmask-root and the bench helper (release)");
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--quiet", "--release", "-p", "bitmask-root"])
        .args(["--bin", "bitmask-root", "--example", "bench_lib"])
        .args(["--example", "bench_guard"])
        .status()
        .map_err(|e| format!("could not run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed ({status})"));
    }
    let release = target_dir().join("release");
    let before = match &opts.before {
        None => None,
        Some(rev) => match build_before(rev) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("bench: no \"before\" comparison: {e}");
                None
            }
        },
    };
    Ok(Built {
        bin: release.join("bitmask-root"),
        helper: release.join("examples").join("bench_lib"),
        guard_helper: release.join("examples").join("bench_guard"),
        floor: build_floor()?,
        before,
    })
}

/// Runs `cargo` with `args` in `dir`, output to `target` (quietly); fails unless it succeeds.
fn cargo(dir: &Path, target: &Path, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .args(args)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// The workspace's `[profile.release]` section, as written in its Cargo.toml.
fn release_profile() -> String {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap_or_default();
    let mut out = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        if line.trim_start().starts_with('[') {
            inside = line.trim() == "[profile.release]";
        }
        if inside && !line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A Rust program whose `main` returns at once, built in `target/bench-floor/` with the
/// workspace's release profile: what starting any Rust binary on this machine costs.
fn build_floor() -> Result<PathBuf, String> {
    let dir = target_dir().join("bench-floor");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
    let manifest = format!(
        "[package]\nname = \"bench-floor\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n\n{}",
        release_profile()
    );
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
    };
    write(dir.join("Cargo.toml"), &manifest)?;
    write(src.join("main.rs"), "fn main() {}\n")?;
    cargo(
        &dir,
        &dir.join("target"),
        &["build", "--quiet", "--release"],
    )?;
    Ok(dir.join("target").join("release").join("bench-floor"))
}

/// The bitmask-root binary of commit `rev`, built once in `target/bench-before/COMMIT/` from
/// `git archive` (so this work tree is never touched).
fn build_before(rev: &str) -> Result<(String, PathBuf), String> {
    let out = Command::new("git")
        .current_dir(workspace())
        .args(["rev-parse", "--short=7", &format!("{rev}^{{commit}}")])
        .output()
        .map_err(|e| format!("could not run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git does not know {rev}"));
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = target_dir().join("bench-before").join(&commit);
    let bin = dir.join("target").join("release").join("bitmask-root");
    if bin.is_file() {
        return Ok((commit, bin));
    }
    let src = dir.join("src");
    if !src.join("Cargo.toml").is_file() {
        std::fs::create_dir_all(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
        let mut archive = Command::new("git")
            .current_dir(workspace())
            .args(["archive", "--format=tar", &commit])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not run git archive: {e}"))?;
        let Some(tar_input) = archive.stdout.take() else {
            let _ = archive.wait();
            return Err("git archive has no output".into());
        };
        let status = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&src)
            .stdin(tar_input)
            .status()
            .map_err(|e| format!("could not run tar: {e}"))?;
        let archived = archive.wait().map_err(|e| format!("git archive: {e}"))?;
        if !status.success() || !archived.success() {
            return Err(format!("unpacking {commit} failed ({status}, {archived})"));
        }
    }
    eprintln!(
        "bench: building bitmask-root at {commit} (the \"before\"; once, in {})",
        dir.display()
    );
    cargo(
        &src,
        &dir.join("target"),
        &["build", "--quiet", "--release", "--bin", "bitmask-root"],
    )?;
    Ok((commit, bin))
}

/// Fails unless the tools the bench drives are installed and this is root.
fn preflight() -> Result<(), String> {
    if sys::euid() != 0 {
        return Err("cargo xtask bench creates network namespaces and needs root (sudo -E cargo xtask bench)".into());
    }
    for tool in [
        "ip",
        "nft",
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip6tables-restore",
    ] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file());
        if !found {
            return Err(format!(
                "{tool} is not installed (apt-get install iproute2 nftables iptables)"
            ));
        }
    }
    Ok(())
}

/// `cargo xtask bench [OPTIONS]`.
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return Ok(());
    }
    let opts = Opts::parse(args)?;
    preflight()?;
    let built = build(&opts)?;
    // Before any thread exists: the protected namespace, inherited by every child.
    let root_ino = lab::ns_ino("/proc/self/ns/net")?;
    std::env::set_var("BITMASK_ROOT_REQUIRE_NETNS", root_ino.to_string());
    sys::install_interrupt_handler().map_err(|e| format!("signal handler: {e}"))?;
    lab::remove_stale();
    if opts.guard_only {
        return guard::run(&built, &opts, root_ino).map(|_| ());
    }
    let results = {
        let lab = lab::Lab::create(root_ino)?;
        suite::run_in_namespace(&lab, &built, &opts)?
        // `lab` drops here: both namespaces and the scratch directory are deleted.
    };
    report::publish(&results, &opts)?;
    guard::run(&built, &opts, root_ino).map(|_| ())
}

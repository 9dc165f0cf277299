//! The guard section of `cargo xtask bench` (alone: `cargo xtask bench --guard`, a few
//! seconds): how fast `firewall guard` reacts, timed from outside it by the release build of
//! `examples/bench_guard.rs` running in a throwaway lab namespace of its own:
//!
//! - in mode watch (the fallback without table flags), from another program deleting the
//!   table (what `nft flush ruleset` does to it) to the table back in the kernel;
//! - in mode owner, from an address added to or removed from the uplink to the re-planned
//!   table in the kernel.
//!
//! Writes `bench-guard.md` next to `bench.md` (`docs/`, or `target/bench-quick/`).

use super::lab::{Inside, Lab};
use super::stats::{fmt_ms, quantile};
use super::{Built, Opts};
use std::fmt::Write as _;

/// Milliseconds of every round, per measurement.
#[derive(Debug, Default)]
pub struct GuardResults {
    /// From the delete's start to the table back in the kernel (mode watch).
    pub repair: Vec<f64>,
    /// The table seen missing by a poller (mode watch), in the rounds it saw it.
    pub missing: Vec<f64>,
    /// Rounds in which the poller never saw the table missing.
    pub unseen: usize,
    /// Network change to re-planned table in the kernel (mode owner).
    pub replan: Vec<f64>,
    /// `/proc/loadavg` before and after.
    pub load: (String, String),
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn parse(out: &str, key: &str) -> Result<Vec<f64>, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .ok_or_else(|| format!("bench_guard printed no {key} line"))?;
    line.split_whitespace()
        .map(|w| {
            w.parse::<f64>()
                .map(|ns| ns / 1e6)
                .map_err(|_| format!("bench_guard: bad number {w:?}"))
        })
        .collect()
}

/// Runs the section in a lab of its own and writes its report.
pub fn run(built: &Built, opts: &Opts, root_ino: u64) -> Result<GuardResults, String> {
    eprintln!(
        "bench: guard section ({} rounds per measurement)",
        opts.guard_rounds
    );
    let lab = Lab::create(root_ino)?;
    let path = lab.client_path();
    let (expect, root) = (lab.client_ino(), lab.root_ino);
    let program = built.guard_helper.clone();
    let rounds = opts.guard_rounds;
    let load0 = loadavg();
    let worker = std::thread::Builder::new()
        .name("bench-guard".into())
        .spawn(move || -> Result<String, String> {
            let inside = Inside::enter(&path, expect, root)?;
            let out = inside
                .command(&program)?
                .arg(rounds.to_string())
                .output()
                .map_err(|e| format!("could not run {}: {e}", program.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "bench_guard failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .map_err(|e| format!("could not start the bench thread: {e}"))?;
    let out = worker
        .join()
        .map_err(|_| "the bench thread panicked".to_string())??;
    drop(lab);
    let results = GuardResults {
        repair: parse(&out, "repair")?,
        missing: parse(&out, "missing")?,
        unseen: out
            .lines()
            .find_map(|l| l.strip_prefix("unseen ")?.trim().parse().ok())
            .ok_or("bench_guard printed no unseen line")?,
        replan: parse(&out, "replan")?,
        load: (load0, loadavg()),
    };
    let md = markdown(&results, opts);
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let file = opts.out.join("bench-guard.md");
    std::fs::write(&file, &md).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("{md}");
    eprintln!("bench: wrote {}", file.display());
    Ok(results)
}

fn row(md: &mut String, what: &str, v: &[f64]) {
    let q = |p| quantile(v, p).map_or("–".to_string(), fmt_ms);
    let _ = writeln!(
        md,
        "| {what} | {} | {} ms | {} ms | {} ms | {} ms |",
        v.len(),
        q(0.5),
        q(0.95),
        q(0.0),
        q(1.0)
    );
}

/// The report.
pub fn markdown(r: &GuardResults, opts: &Opts) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(md, "# Guard benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}` (the guard section; alone: `cargo xtask bench --guard`). \
         Release build, kernel {kernel}, {cpus} CPUs, load average before/after: {} / {}.\n",
        if opts.quick { " --quick" } else { "" },
        r.load.0,
        r.load.1
    );
    let _ = writeln!(md, "| measurement | rounds | median | p95 | min | max |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    row(
        &mut md,
        "mode watch: another program starts deleting the table → back in the kernel",
        &r.repair,
    );
    row(
        &mut md,
        &format!(
            "mode watch: table seen missing by a poller (the window without it; not seen at all in {} of {} rounds)",
            r.unseen,
            r.unseen + r.missing.len()
        ),
        &r.missing,
    );
    row(
        &mut md,
        "mode owner: address added or removed → re-planned table in the kernel",
        &r.replan,
    );
    let _ = writeln!(
        md,
        "\nMethod: `examples/bench_guard.rs` embeds a `Guard` (what `firewall guard` runs) in a \
         throwaway namespace and times it from another thread, polling the kernel every 100 µs \
         with one small netlink request; each round ends when the kernel holds the result, then \
         the guard's own event for the round is awaited so rounds never overlap.\n\n\
         - Repair: another socket deletes table `inet bitmask` in one transaction (what `nft \
         flush ruleset` does to it); the guard learns it from nftables' notifications and \
         creates it again. The first row includes the deleting transaction itself (the kernel \
         waits for readers of the deleted table before that program's `sendmsg` returns); the \
         second is what a second thread, polling without pause, saw: from the first answer \
         \"no table\" to the first \"table\" (when the window is shorter than one of its \
         requests it sees nothing). Only mode watch needs this: in mode owner the \
         kernel refuses the deletion and a flush skips the table, so nothing is ever missing \
         (the namespace tests count zero packets through it under a 1 packet/ms flood).\n\
         - Re-plan: an address on a private prefix (10.99.0.2/24) is added to the uplink over \
         rtnetlink, then removed, alternately; the guard waits for {} ms of quiet after a \
         notice (at most {} ms) so that a burst of changes gives one transaction, reads the \
         network, plans, and replaces the table in one transaction (with the kernel's RCU wait \
         for the old table). The quiet window is most of this time, by design.",
        40, 250
    );
    md
}

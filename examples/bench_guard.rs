//! The guard's half of `cargo xtask bench --guard` (see `xtask/src/bench/guard.rs`): embeds a
//! [`Guard`] as a VPN client would, and times how fast it reacts, seen from outside it:
//!
//! - **repair** (mode watch, the fallback): another socket deletes table `inet bitmask` (what
//!   `nft flush ruleset` does to it); time from the delete's start until the table is back in
//!   the kernel, and how long a second thread, polling without pause, saw it missing (the
//!   window without a firewall; it may be too short to be seen at all);
//! - **replan** (mode owner): an address on a private prefix is added to (or removed from) the
//!   uplink over rtnetlink; time until the table in the kernel carries the new plan (its
//!   comment changes in the same transaction as its rules).
//!
//! Both are polled every 100 µs from this thread with one small netlink request, so they
//! include the guard's notification latency, its debounce (replan: 40 ms of quiet) and its
//! transaction, and end when the kernel holds the result. After each round the guard's own
//! event for it is awaited, so rounds never overlap.
//!
//! It must be started inside the bench's throwaway network namespace, and refuses to run
//! unless `BITMASK_ROOT_REQUIRE_NETNS` names another namespace than its own (and its own is not
//! PID 1's). Usage: `bench_guard ROUNDS`. Output: `repair NS...`, `missing NS...`,
//! `unseen N` (rounds in which the poller never saw the table missing), `replan NS...`, `ok`.
#![deny(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitmask_root::discovery;
use bitmask_root::engine::{self, REQUIRE_NETNS_ENV};
use bitmask_root::firewall::guard::{Event, Guard, GuardOptions};
use bitmask_root::policy::Policy;
use bitmask_root::{readback, transport};
use futures::{StreamExt, TryStreamExt};

const TABLE: &str = "bitmask";
/// A gateway of the bench's sink range.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The private address added and removed on the uplink.
const ROAM: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const POLL: Duration = Duration::from_micros(100);
const BOUND: Duration = Duration::from_secs(5);

fn main() {
    let rounds: usize = match std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        Some(n) if n > 0 => n,
        _ => {
            eprintln!("usage: bench_guard ROUNDS");
            std::process::exit(2);
        }
    };
    if let Err(e) = check_namespace() {
        eprintln!("bench_guard: {e}");
        std::process::exit(3);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_guard: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(rounds)) {
        Ok(()) => println!("ok"),
        Err(e) => {
            eprintln!("bench_guard: {e}");
            std::process::exit(1);
        }
    }
}

/// Refuses to go on unless this process runs in a namespace other than the protected one
/// and PID 1's.
fn check_namespace() -> Result<(), String> {
    let protected: u64 = std::env::var(REQUIRE_NETNS_ENV)
        .map_err(|_| format!("{REQUIRE_NETNS_ENV} is not set; run me through cargo xtask bench"))?
        .trim()
        .parse()
        .map_err(|_| format!("{REQUIRE_NETNS_ENV} is not an inode number"))?;
    let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino()).ok();
    let ours = ino("/proc/thread-self/ns/net").ok_or("cannot stat my namespace")?;
    if ours == protected || Some(ours) == ino("/proc/1/ns/net") {
        return Err("refusing to run in the machine's own network namespace".into());
    }
    engine::guard_namespace().map_err(|e| e.to_string())
}

/// Polls `done` every [`POLL`] until it holds; the time it took from `t0`.
fn until(
    t0: Instant,
    what: &str,
    done: impl Fn() -> Result<bool, String>,
) -> Result<Duration, String> {
    loop {
        if done()? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > BOUND {
            return Err(format!("{what} did not happen within {BOUND:?}"));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits (at most [`BOUND`]) for the guard's event that `want` accepts.
async fn event(guard: &mut Guard, want: impl Fn(&Event) -> bool) -> Result<(), String> {
    let wait = async {
        while let Some(e) = guard.next().await {
            if let Event::Error { what } = &e {
                return Err(format!("the guard reported an error: {what}"));
            }
            if want(&e) {
                return Ok(());
            }
        }
        Err("the guard ended".to_string())
    };
    tokio::time::timeout(BOUND, wait)
        .await
        .map_err(|_| "the guard's event did not come".to_string())?
}

async fn run(rounds: usize) -> Result<(), String> {
    let policy = Policy::builder()
        .gateway(IpAddr::V4(GATEWAY))
        .build()
        .map_err(|e| e.to_string())?;
    let s = |e: bitmask_root::Error| e.to_string();

    // Watch mode: another program deletes the table, the guard puts it back.
    let mut guard = Guard::start_with(policy.clone(), GuardOptions { watch_only: true })
        .await
        .map_err(s)?;
    event(&mut guard, |e| matches!(e, Event::Started { .. })).await?;
    let remove = transport::encode_remove(TABLE).map_err(|e| e.to_string())?;
    let (mut repair, mut missing, mut unseen) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..rounds {
        check_namespace()?;
        // A second thread watches the table continuously: when it went, when it came back.
        // The window can be shorter than one of its requests; then it never sees it go.
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let watcher = std::thread::spawn(move || -> Result<Option<Duration>, String> {
            let exists = || readback::table_exists(TABLE).map_err(|e| e.to_string());
            while exists()? {
                if stop2.load(Ordering::Relaxed) {
                    return Ok(None);
                }
            }
            let gone = Instant::now();
            while !exists()? {
                if gone.elapsed() > BOUND {
                    return Err("the table did not come back".into());
                }
            }
            Ok(Some(gone.elapsed()))
        });
        std::thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        transport::commit(&remove).map_err(|e| e.to_string())?;
        repair.push(until(t0, "the repair", || {
            readback::table_exists(TABLE).map_err(|e| e.to_string())
        })?);
        event(&mut guard, |e| matches!(e, Event::Repaired { .. })).await?;
        stop.store(true, Ordering::Relaxed);
        match watcher.join() {
            Ok(Ok(Some(d))) => missing.push(d),
            Ok(Ok(None)) => unseen += 1,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("the watcher panicked".into()),
        }
    }
    guard.stop().await.map_err(s)?;

    // Owner mode: the network changes, the guard re-plans.
    let mut guard = Guard::start(policy).await.map_err(s)?;
    event(&mut guard, |e| matches!(e, Event::Started { .. })).await?;
    let net = discovery::discover().await.map_err(|e| e.to_string())?;
    let index = net
        .default_v4
        .as_deref()
        .and_then(|d| net.interface(d))
        .map(|i| i.index)
        .ok_or("no IPv4 default route in the bench namespace")?;
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let mut replan = Vec::new();
    for round in 0..rounds * 2 {
        check_namespace()?;
        let before = readback::comment(TABLE).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        if round % 2 == 0 {
            handle
                .address()
                .add(index, IpAddr::V4(ROAM), 24)
                .execute()
                .await
                .map_err(|e| format!("address add: {e}"))?;
        } else {
            let msg = handle
                .address()
                .get()
                .set_link_index_filter(index)
                .set_address_filter(IpAddr::V4(ROAM))
                .execute()
                .try_next()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the added address is gone")?;
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| format!("address del: {e}"))?;
        }
        replan.push(until(t0, "the re-plan", || {
            Ok(readback::comment(TABLE).map_err(|e| e.to_string())? != before)
        })?);
        event(&mut guard, |e| {
            matches!(
                e,
                Event::NetworkChanged {
                    replanned: Some(_),
                    ..
                }
            )
        })
        .await?;
    }
    conn.abort();
    guard.stop().await.map_err(s)?;

    let ns = |v: &[Duration]| {
        v.iter()
            .map(|d| d.as_nanos().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("repair {}", ns(&repair));
    println!("missing {}", ns(&missing));
    println!("unseen {unseen}");
    println!("replan {}", ns(&replan));
    Ok(())
}

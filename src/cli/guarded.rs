//! The command line's side of the guard: `firewall guard` itself, and how `firewall start`,
//! `block`, `stop`, `isup` and `--dry-run` behave while a guard runs (through its control
//! socket) or after one ended (an orphaned table).
//!
//! How they share the namespace's command lock ([`crate::nft::lock`]) with a guard:
//! `start`, `block` and `stop` take the lock first, then look for a guard. Without one they
//! act holding the lock, as before guards existed. With one they let the lock go **before**
//! they send their request and wait for the answer: the guard takes the lock itself for the
//! change it makes, so a command never waits for a guard that waits for the command's lock.
//! A guard seen starting or ending (its own lock held, its socket silent) is waited for with
//! the command lock released too. `isup` judges the table holding the lock (in
//! [`crate::firewall::status()`]) and asks the guard who it is after letting it go.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};

use super::{fail, Outcome};
use crate::firewall::guard::control::{self, ControlClient, ControlServer, Lookup};
use crate::firewall::guard::{describe_ownership, Event, Guard, GuardError, GuardOptions};
use crate::firewall::plan;
use crate::firewall::policy::Policy;
use crate::nft::lock::NamespaceLock;
use crate::nft::readback;

/// How long a command waits for a guard that is starting or ending.
const GUARD_WAIT: Duration = Duration::from_secs(5);

/// Where a firewall change goes.
enum Route {
    /// To the running guard (the command lock released).
    Guard(ControlClient),
    /// To the kernel, by this command, holding the command lock.
    Direct(NamespaceLock),
}

/// Takes the command lock, then looks for a guard; lets the lock go when one runs (see the
/// module's documentation).
async fn route() -> Result<Route, crate::Error> {
    crate::engine::guard_namespace()?;
    let deadline = Instant::now() + GUARD_WAIT;
    loop {
        let lock = NamespaceLock::acquire()?;
        match control::look(true).await? {
            Lookup::Absent => return Ok(Route::Direct(lock)),
            Lookup::Running(client) => {
                drop(lock);
                return Ok(Route::Guard(client));
            }
            Lookup::Unanswered => {
                drop(lock);
                if Instant::now() >= deadline {
                    return Err(control::unanswered().into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `firewall start` and `firewall block`: hands `policy` to the running guard (returns its
/// pid), or applies it holding the command lock (returns `None`).
pub(super) async fn start(policy: &Policy) -> Result<Option<u32>, crate::Error> {
    match route().await? {
        Route::Guard(client) => {
            let pid = client.pid();
            client.start(policy).await?;
            Ok(Some(pid))
        }
        Route::Direct(lock) => {
            crate::firewall::start_held(policy, &lock)
                .await
                .map_err(explain)?;
            Ok(None)
        }
    }
}

/// `firewall stop`: makes the running guard remove the table and end (returns its pid), or
/// removes the table holding the command lock; and whether the table was there.
pub(super) async fn stop() -> Result<(Option<u32>, bool), crate::Error> {
    match route().await? {
        Route::Guard(client) => {
            let pid = client.pid();
            let removed = client.stop().await?;
            Ok((Some(pid), removed))
        }
        Route::Direct(lock) => {
            let removed = crate::firewall::stop_held(&lock).map_err(explain)?;
            Ok((None, removed))
        }
    }
}

/// Who keeps the table, for `isup`: the guard that runs, or the table's flags (orphaned, or
/// owned by a program this command cannot reach).
pub(super) async fn protection() -> Option<String> {
    match control::connect().await {
        Ok(Some(client)) => {
            let pid = client.pid();
            Some(match client.status().await {
                Ok(s) if s.mode == "owner" => format!(
                    "guarded by pid {} (mode owner: only the guard may change the table)",
                    s.pid
                ),
                Ok(s) => format!(
                    "guarded by pid {} (mode {}: the guard re-applies the table when it changes)",
                    s.pid, s.mode
                ),
                Err(e) => format!("a guard (pid {pid}) runs but did not answer ({e})"),
            })
        }
        Ok(None) => readback::ownership(plan::TABLE)
            .ok()
            .flatten()
            .and_then(|o| describe_ownership(&o)),
        Err(e) => Some(format!("could not ask for a guard ({e})")),
    }
}

/// What `--dry-run firewall CMD` adds on stderr about a guard or an orphaned table. Needs root
/// (the control socket and nftables are root's); says nothing otherwise. Changes nothing.
pub(super) async fn dry_run_note(cmd: &str) -> Option<String> {
    if crate::sys::effective_uid() != 0 {
        return None;
    }
    if let Ok(Some(client)) = control::probe().await {
        let pid = client.pid();
        return Some(match cmd {
            "start" | "block" => format!("a guard (pid {pid}) keeps table inet bitmask: firewall {cmd} would hand it this policy, and it would apply it"),
            "stop" => format!("a guard (pid {pid}) keeps table inet bitmask: firewall stop would make it remove the table and end"),
            _ => format!("a guard (pid {pid}) already runs in this network namespace: firewall guard would refuse to start"),
        });
    }
    let o = readback::ownership(plan::TABLE).ok().flatten()?;
    if o.is_orphaned() {
        Some(match cmd {
            "guard" => "table inet bitmask is orphaned (its guard ended; the kernel keeps it): firewall guard would take it over with no moment without it, with the table flags owner and persist".to_string(),
            _ => "table inet bitmask is orphaned: its guard ended and the kernel keeps it (persist flag); nothing repairs it now".to_string(),
        })
    } else if o.is_owned() {
        Some(format!(
            "table inet bitmask is owned by netlink port {} (a guard this command cannot reach): firewall {cmd} would be refused",
            o.owner.map_or_else(|| "?".to_string(), |p| p.to_string())
        ))
    } else {
        None
    }
}

/// A refusal (EPERM) because another program owns the table, said in words.
pub(super) fn explain(e: crate::Error) -> crate::Error {
    let eperm = matches!(
        &e,
        crate::Error::Transport(crate::nft::transport::TransportError::Rejected { source, .. })
            if source.raw_os_error() == Some(libc::EPERM)
    );
    if eperm {
        if let Ok(Some(o)) = readback::ownership(plan::TABLE) {
            if o.is_owned() {
                return GuardError::OwnedElsewhere { port: o.owner }.into();
            }
        }
    }
    e
}

/// `firewall guard`: runs until SIGTERM or SIGINT (leaving the firewall up) or until a
/// `firewall stop` (which removes it). One line per event on stdout.
pub(super) async fn run_guard(policy: Policy, options: GuardOptions) -> Outcome {
    let signals = |kind| signal(kind).map_err(|e| (1, format!("could not catch signals ({e})")));
    let mut term = signals(SignalKind::terminate())?;
    let mut int = signals(SignalKind::interrupt())?;
    // The guard's own lock (one guard per namespace) and socket first: a second guard never
    // touches the table. The command lock is taken by the guard for each transaction only.
    let server = ControlServer::bind().await.map_err(|e| fail(e.into()))?;
    let mut guard = Guard::start_with(policy, options)
        .await
        .map_err(|e| fail(explain(e)))?;
    let handle = guard.handle();
    let serve = server.serve(handle.clone());
    tokio::pin!(serve);
    let mut serving = true;
    let mut last = None;
    loop {
        tokio::select! {
            ev = guard.next() => match ev {
                Some(ev) => {
                    println!("bitmask-root: guard: {ev}");
                    last = Some(ev);
                }
                None => break,
            },
            _ = &mut serve, if serving => serving = false,
            _ = term.recv() => {
                println!("bitmask-root: guard: SIGTERM received");
                handle.leave();
            }
            _ = int.recv() => {
                println!("bitmask-root: guard: SIGINT received");
                handle.leave();
            }
        }
    }
    match last {
        Some(Event::Stopped { .. }) => {
            // Let the control socket answer the `firewall stop` that ended the guard.
            if serving {
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut serve).await;
            }
            Ok(0)
        }
        Some(Event::Left { .. }) => Ok(0),
        _ => Err((
            1,
            "the guard ended unexpectedly; the table stays as it was (firewall isup tells its state)"
                .to_string(),
        )),
    }
}

//! The guard: a kill switch that holds itself against other programs, network changes and
//! crashes.
//!
//! [`Guard::start`] applies a [`Policy`] and then keeps table `inet bitmask` right until it is
//! stopped:
//!
//! - **Other programs.** The table is created with the nftables table flags *owner* and
//!   *persist* ([`Mode::Owner`]): only the guard's netlink socket may change or delete it,
//!   `nft flush ruleset` (Debian's `nftables.conf`, `systemctl reload nftables`, firewall
//!   managers) skips it, and `nft delete table inet bitmask` fails with "Operation not
//!   permitted". Where the kernel lacks the flags (owner needs Linux 5.12, persist 6.9), or when
//!   asked ([`GuardOptions::watch_only`]), the guard watches nftables' change notifications
//!   instead and re-applies the table within milliseconds of a change ([`Mode::Watch`]).
//!   Either way it reads its table back after every change another program commits and
//!   reports it ([`Event::Intact`], [`Event::Repaired`]). A change the kernel refuses is never
//!   committed, so only the program that tried learns of it.
//! - **Network changes.** It subscribes to rtnetlink's link, address and route notices (no
//!   polling), waits out a burst (40 ms of quiet, at most 250 ms), reads the network again,
//!   and re-applies in one transaction only when the plan changed ([`Event::NetworkChanged`]).
//! - **Crashes.** With the persist flag the kernel keeps the table when the guard's socket
//!   closes, however the guard ends: the firewall stays up (fail closed), *orphaned* (no owner,
//!   an ordinary table again). A new guard takes it over with no moment without it, and
//!   `firewall stop` removes it.
//!
//! [`GuardHandle::update`] swaps the policy (new gateways) in one transaction;
//! [`GuardHandle::stop`] removes the table and ends the guard; [`GuardHandle::leave`] (or
//! dropping the guard) ends it and leaves the table up. A guard is a [`Stream`] of
//! [`Event`]s.
//!
//! The guard runs on a thread of its own, started in the network namespace of the thread that
//! calls [`Guard::start`]; it keeps one netfilter socket (a [`Session`](crate::nft::transport::Session))
//! open for its whole life, because the kernel binds the table to that socket.
//!
//! **The command lock.** Like every command that changes or judges the firewall, the guard
//! holds the namespace's command lock ([`crate::nft::lock`]) while it changes or reads back
//! its table, but only for that: around the take-over at start, each update, re-plan, check
//! and repair, and the removal at stop; never while it waits for events. So one-shot commands
//! and other libraries' calls never wait for a guard longer than one of its transactions, and
//! a guard never interleaves with them. A caller must not hold the lock while it waits for
//! [`GuardHandle::update`] or [`GuardHandle::stop`]: the guard needs the lock to act.
//!
//! **Verification.** After each of its commits the guard reads the table back at one
//! nftables generation, as [`crate::nft::engine`] does. When another program committed a
//! change to the table right after the guard's commit (possible only in [`Mode::Watch`]), that
//! is not the guard's failure: the other program's commit is notified to the guard, which
//! then repairs the table and reports it ([`Event::Repaired`]).
//!
//! Any [`Policy`] may be guarded, a blocking one ([`crate::policy::Mode::Block`], no gateway)
//! included; [`GuardHandle::update`] swaps one for the other in one transaction.
//!
//! [`control`] is the root-only control socket through which the command line's
//! `firewall start`, `stop` and `isup` reach a running guard.
//!
//! ```no_run
//! use futures::StreamExt;
//! use bitmask_root::firewall::guard::Guard;
//! use bitmask_root::policy::Policy;
//! # async fn demo() -> Result<(), bitmask_root::Error> {
//! let policy = Policy::builder().gateway("198.51.100.7".parse().unwrap()).build()?;
//! let mut guard = Guard::start(policy).await?;
//! println!("{}", guard.mode());
//! let handle = guard.handle();
//! tokio::spawn(async move {
//!     let new = Policy::builder().gateway("203.0.113.9".parse().unwrap()).build().unwrap();
//!     handle.update(new).await
//! });
//! while let Some(event) = guard.next().await {
//!     println!("{event}");
//! }
//! # Ok(()) }
//! ```

pub mod control;
pub mod event;
mod netmon;
mod nftmon;
mod worker;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::firewall::policy::Policy;
use crate::nft::engine::Applied;
use crate::nft::readback::Ownership;

pub use event::{Changer, Event, Mode, Takeover, WatchReason};
use worker::Command;

/// Environment variable: `BITMASK_ROOT_GUARD_MODE=watch` makes `firewall guard` watch
/// instead of owning its table (the fallback mode, for tests and benchmarks). Honoured only
/// when the real uid is 0 and no other invoking user is named (`PKEXEC_UID`, `SUDO_UID`).
pub const GUARD_MODE_ENV: &str = "BITMASK_ROOT_GUARD_MODE";

/// How to run a guard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardOptions {
    /// Never ask for the table flags: watch nftables and re-apply on change
    /// ([`Mode::Watch`]), as on kernels without them.
    pub watch_only: bool,
}

impl GuardOptions {
    /// The options [`GUARD_MODE_ENV`] asks for, when it is honoured (see there); `Err` with
    /// the value when it is set to something other than `owner` or `watch`.
    pub fn from_env() -> Result<GuardOptions, String> {
        let trusted = crate::sys::openvpn::real_uid() == 0
            && ["PKEXEC_UID", "SUDO_UID"]
                .iter()
                .all(|k| std::env::var(k).map_or(true, |v| v == "0"));
        match std::env::var(GUARD_MODE_ENV) {
            Ok(v) if trusted => match v.as_str() {
                "watch" => Ok(GuardOptions { watch_only: true }),
                "owner" | "" => Ok(GuardOptions::default()),
                other => Err(other.to_string()),
            },
            _ => Ok(GuardOptions::default()),
        }
    }
}

/// Why a guard could not start, or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The guard has ended; nothing more can be asked of it.
    #[error("the guard has ended")]
    Ended,
    /// The guard's thread could not be started.
    #[error("could not start the guard's thread ({0})")]
    Thread(#[source] std::io::Error),
    /// A notification subscription failed.
    #[error("could not subscribe to {what} ({source})")]
    Subscribe {
        /// Which notifications.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another live socket owns the table.
    #[error("table inet bitmask is owned by another program's netlink socket{}, a guard that this command cannot reach through /run/bitmask-root/guard: end that program first", port.map(|p| format!(" (port {p})")).unwrap_or_default())]
    OwnedElsewhere {
        /// The owner's netlink port id.
        port: Option<u32>,
    },
    /// The kernel accepted the table flags but does not list the guard as owner.
    #[error("the table was applied but the kernel does not list this guard as its owner ({0})")]
    NotOwned(String),
    /// A guard already runs in this network namespace.
    #[error("a guard already runs in this network namespace{}: change its gateways with firewall start, end it with firewall stop", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// Its pid, when it answered.
        pid: Option<u32>,
    },
    /// The control socket or its directory could not be used.
    #[error("guard control socket {path}: {reason}")]
    Control {
        /// The path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The guard's run directory is unsafe, or this namespace cannot be named.
    #[error(transparent)]
    RunDir(#[from] crate::nft::lock::LockError),
    /// The guard refused a request.
    #[error("{message}")]
    Refused {
        /// The exit code the guard gave.
        code: u8,
        /// Its message.
        message: String,
    },
}

impl GuardError {
    /// The exit code for the command line.
    pub fn exit_code(&self) -> u8 {
        match self {
            GuardError::Refused { code, .. } => *code,
            _ => 1,
        }
    }
}

/// What the worker reports once the table is in place.
pub(crate) struct Started {
    mode: Mode,
    port: u32,
}

/// A running guard: a [`Stream`] of [`Event`]s. Dropping it ends the guard and leaves the
/// table in place, as [`GuardHandle::leave`] does.
pub struct Guard {
    handle: GuardHandle,
    events: UnboundedReceiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
    ended: bool,
}

/// What a guard is, for its handles.
#[derive(Debug)]
struct Info {
    mode: Mode,
    port: u32,
}

/// A handle on a running guard, to update, stop or leave it from anywhere (it is `Clone` and
/// `Send`).
#[derive(Debug, Clone)]
pub struct GuardHandle {
    commands: mpsc::UnboundedSender<Command>,
    info: Arc<Info>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Update(..) => "Update",
            Command::Stop(_) => "Stop",
            Command::Leave => "Leave",
        })
    }
}

impl Guard {
    /// Starts a guard for `policy` in the calling thread's network namespace, with the
    /// options [`GUARD_MODE_ENV`] sets (none by default): reads the network, applies the plan
    /// (taking over a table left by an earlier guard with no moment without it) and returns
    /// once the table is verified in place. The first event is [`Event::Started`].
    pub async fn start(policy: Policy) -> Result<Guard, Error> {
        Guard::start_with(policy, GuardOptions::default()).await
    }

    /// Like [`Guard::start`], with `options`.
    pub async fn start_with(policy: Policy, options: GuardOptions) -> Result<Guard, Error> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = futures::channel::mpsc::unbounded();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bmr-guard".into())
            .spawn(move || worker::run(policy, options, ready_tx, cmd_rx, ev_tx))
            .map_err(GuardError::Thread)?;
        match ready_rx.await {
            Ok(Ok(started)) => Ok(Guard {
                handle: GuardHandle {
                    commands: cmd_tx,
                    info: Arc::new(Info {
                        mode: started.mode,
                        port: started.port,
                    }),
                },
                events: ev_rx,
                thread: Some(thread),
                ended: false,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(GuardError::Ended.into()),
        }
    }

    /// How the guard keeps its table.
    pub fn mode(&self) -> &Mode {
        self.handle.mode()
    }

    /// The netlink port id of the socket that owns the table (in [`Mode::Owner`]).
    pub fn port(&self) -> u32 {
        self.handle.info.port
    }

    /// A handle to update, stop or leave the guard from another task.
    pub fn handle(&self) -> GuardHandle {
        self.handle.clone()
    }

    /// See [`GuardHandle::update`].
    pub async fn update(&self, policy: Policy) -> Result<Applied, Error> {
        self.handle.update(policy).await
    }

    /// Removes the table and ends the guard; returns whether the table was there.
    pub async fn stop(mut self) -> Result<bool, Error> {
        let r = self.handle.stop().await;
        if r.is_ok() {
            self.finish().await;
        }
        r
    }

    /// Ends the guard and leaves the table up; returns once the guard's socket is closed.
    pub async fn leave(mut self) {
        self.handle.leave();
        self.finish().await;
    }

    /// Waits for the worker to end (its events stream ends when it does).
    async fn finish(&mut self) {
        while self.events.next().await.is_some() {}
        self.ended = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Stream for Guard {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let p = self.events.poll_next_unpin(cx);
        if let Poll::Ready(None) = p {
            self.ended = true;
        }
        p
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.handle.leave();
        if self.ended {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl GuardHandle {
    /// How the guard keeps its table.
    pub fn mode(&self) -> &Mode {
        &self.info.mode
    }

    /// The netlink port id of the socket that owns the table (in [`Mode::Owner`]).
    pub fn port(&self) -> u32 {
        self.info.port
    }

    /// Swaps the policy: plans it for the network as it is and applies it in one transaction
    /// (the previous table stays on any error). Returns what is in the kernel now. Do not
    /// hold the namespace's command lock while awaiting it: the guard takes it to apply.
    pub async fn update(&self, policy: Policy) -> Result<Applied, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Update(policy, tx))
            .map_err(|_| GuardError::Ended)?;
        rx.await.map_err(|_| GuardError::Ended)?
    }

    /// Removes the table and ends the guard; returns whether the table was there. Do not hold
    /// the namespace's command lock while awaiting it.
    pub async fn stop(&self) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stop(tx))
            .map_err(|_| GuardError::Ended)?;
        rx.await.map_err(|_| GuardError::Ended)?
    }

    /// Ends the guard and leaves the table up (kept by the kernel, orphaned, in
    /// [`Mode::Owner`]). Returns at once; the guard's stream ends with [`Event::Left`].
    pub fn leave(&self) {
        let _ = self.commands.send(Command::Leave);
    }
}

/// How a table read from the kernel is held, in words, for status lines: guarded (owned by
/// a live socket) or orphaned (persisted without owner); `None` for an ordinary table.
pub fn describe_ownership(o: &Ownership) -> Option<String> {
    if o.is_owned() {
        Some(format!(
            "owned by netlink port {}: only that program may change it",
            o.owner.map_or_else(|| "?".to_string(), |p| p.to_string())
        ))
    } else if o.is_orphaned() {
        Some(
            "orphaned: its guard ended and the kernel keeps it (persist flag), but nothing repairs it now; run firewall guard to take it over"
                .to_string(),
        )
    } else {
        None
    }
}

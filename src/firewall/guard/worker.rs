//! The guard's loop. It runs on a thread of its own, born in the caller's network namespace,
//! with a single-threaded tokio runtime: the netfilter socket that owns the table is not
//! `Send` and must live, for the guard's whole life, on the thread that opened it.
//!
//! The guard takes the namespace's command lock ([`crate::nft::lock`]) around each of its
//! transactions, never for its whole life: the take-over at start (ownership read, adoption or
//! replacement, read-back, owner check), each update, re-plan and repair (commit and
//! read-back), each check of the table after another program's commit (read-back, and the
//! repair it leads to), and the removal at stop. Between them the lock is free, so one-shot
//! commands (`fw-email start`, `firewall isup`, ...) run as usual while a guard waits for
//! events. Waiting for the lock blocks only this thread, at most
//! [`WAIT`](crate::nft::lock::WAIT); if it stays taken, the guard reports an error and tries
//! again.

use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use tokio::sync::{mpsc, oneshot};

use super::event::{Changer, Event, Mode, Takeover, WatchReason};
use super::netmon::NetMonitor;
use super::nftmon::{NftMonitor, Notice};
use super::{GuardError, GuardOptions, Started};
use crate::error::Error;
use crate::firewall::discovery::{self, Network};
use crate::firewall::plan::{self, Ruleset};
use crate::firewall::policy::Policy;
use crate::nft::engine::{self, Applied};
use crate::nft::lock::NamespaceLock;
use crate::nft::readback;
use crate::nft::transport::{Session, TableFlags, TransportError};

/// A burst of network notices ends after this much quiet...
const QUIET: Duration = Duration::from_millis(40);
/// ...or this long after its first notice, whichever comes first.
const MAX_DELAY: Duration = Duration::from_millis(250);
/// After a failure, the guard tries again this much later (and at every notice).
const RETRY: Duration = Duration::from_millis(500);

/// What the guard's handle asks of the loop.
pub(super) enum Command {
    /// Swap the policy.
    Update(Policy, oneshot::Sender<Result<Applied, Error>>),
    /// Remove the table and end.
    Stop(oneshot::Sender<Result<bool, Error>>),
    /// End, leaving the table in place.
    Leave,
}

/// A burst of network notices being waited out.
struct Burst {
    first: Instant,
    last: Instant,
    notices: usize,
}

impl Burst {
    fn deadline(&self) -> Instant {
        (self.last + QUIET).min(self.first + MAX_DELAY)
    }
}

struct Worker {
    session: Session,
    policy: Policy,
    mode: Mode,
    flags: TableFlags,
    net: Network,
    current: Applied,
    /// This thread's id: the guard's own commits carry it.
    tid: u32,
    /// `None` while a subscription is broken (it is opened again at the next retry).
    nftmon: Option<NftMonitor>,
    netmon: Option<NetMonitor>,
    burst: Option<Burst>,
    retry: Option<Instant>,
    events: UnboundedSender<Event>,
}

/// The thread's body: start, report, then loop until stopped or left.
pub(super) fn run(
    policy: Policy,
    options: GuardOptions,
    ready: oneshot::Sender<Result<Started, Error>>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: UnboundedSender<Event>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::Runtime(e)));
            return;
        }
    };
    rt.block_on(async move {
        let (worker, started) = match Worker::start(policy, &options, events).await {
            Ok(w) => w,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let info = Started {
            mode: worker.mode.clone(),
            port: worker.session.portid(),
        };
        worker.emit(started);
        if ready.send(Ok(info)).is_ok() {
            worker.run(commands).await;
        }
    });
}

/// The next network notice; never, while the subscription is broken.
async fn next_notice(m: &mut Option<NetMonitor>) -> Option<()> {
    match m {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

/// The next nftables notifications; never, while the subscription is broken.
async fn next_commits(m: &mut Option<NftMonitor>) -> std::io::Result<Vec<Notice>> {
    match m {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

/// Takes the namespace's command lock for one transaction (waiting at most
/// [`WAIT`](crate::nft::lock::WAIT), this thread asleep meanwhile).
fn take_lock() -> Result<NamespaceLock, Error> {
    Ok(NamespaceLock::acquire()?)
}

/// What an apply through the guard's session (of `rs`) means for the guard.
///
/// [`engine::Error::ChangedAfterUs`] says that our commit went in (the kernel echoed its
/// generation) and that another program committed a change to the table before it was read
/// back. That is not the guard's failure: what it committed is its table, and that program's
/// commit, which nftables notifies to the guard like any other, makes it check and repair the
/// table at once. (It can happen only in [`Mode::Watch`]: an owned table changes only through
/// its owner.) Every other error is one.
fn settle(r: Result<Applied, engine::Error>, rs: &Ruleset) -> Result<Applied, Error> {
    match r {
        Ok(a) => Ok(a),
        Err(engine::Error::ChangedAfterUs { ours, .. }) => {
            let (comment, fingerprint) = engine::comment_of(rs)?;
            Ok(Applied {
                fingerprint,
                comment,
                generation: ours,
                // Read back whole: the difference was another program's commit.
                verified_by: engine::Verification::ReadBack,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The mode and flags when the kernel refused the flags of `e`, if that is what it did.
fn flags_refused(e: &engine::Error) -> Option<String> {
    match e {
        engine::Error::Transport(TransportError::Rejected { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
            ) =>
        {
            Some(source.to_string())
        }
        _ => None,
    }
}

impl Worker {
    async fn start(
        policy: Policy,
        options: &GuardOptions,
        events: UnboundedSender<Event>,
    ) -> Result<(Worker, Event), Error> {
        let began = Instant::now();
        engine::guard_namespace()?;
        // Subscribe first: nothing that happens from here on goes unseen.
        let nftmon = NftMonitor::open(plan::TABLE).map_err(|source| GuardError::Subscribe {
            what: "nftables notifications",
            source,
        })?;
        let netmon = NetMonitor::open().map_err(|source| GuardError::Subscribe {
            what: "network notices (rtnetlink)",
            source,
        })?;
        let mut session = Session::open()?;
        let net = discovery::discover().await?;
        let rs = plan::plan(&policy, &net)?;
        // The take-over holds the command lock from the ownership read to the owner check.
        let held = take_lock()?;
        let before = readback::ownership(plan::TABLE)?;
        if let Some(o) = before {
            if o.is_owned() {
                return Err(GuardError::OwnedElsewhere { port: o.owner }.into());
            }
        }
        let replaced = Takeover::Replaced {
            orphaned: before.is_some_and(|o| o.is_orphaned()),
        };
        let takeover = if before.is_some() {
            replaced
        } else {
            Takeover::Created
        };
        let watch = |session: &mut Session, reason| -> Result<_, Error> {
            let applied = settle(engine::apply_in(session, &rs, TableFlags::NONE, &held), &rs)?;
            Ok((Mode::Watch(reason), TableFlags::NONE, takeover, applied))
        };
        let (mode, flags, takeover, current) = if options.watch_only {
            watch(&mut session, WatchReason::Asked)?
        } else if let Some(applied) =
            engine::adopt_in(&mut session, &rs, TableFlags::OWNER_PERSIST, &held)?
        {
            (
                Mode::Owner,
                TableFlags::OWNER_PERSIST,
                Takeover::Adopted,
                applied,
            )
        } else {
            match engine::apply_in(&mut session, &rs, TableFlags::OWNER_PERSIST, &held) {
                Ok(applied) => (Mode::Owner, TableFlags::OWNER_PERSIST, takeover, applied),
                Err(e) => match flags_refused(&e) {
                    Some(why) => watch(&mut session, WatchReason::Unsupported(why))?,
                    None => return Err(e.into()),
                },
            }
        };
        if mode == Mode::Owner {
            let port = session.portid();
            match readback::ownership(plan::TABLE)? {
                Some(o) if o.is_owned() && o.owner == Some(port) => {}
                other => {
                    return Err(GuardError::NotOwned(format!(
                        "it lists {other:?}, this guard's socket is port {port}"
                    ))
                    .into())
                }
            }
        }
        drop(held);
        let started = Event::Started {
            mode: mode.clone(),
            takeover,
            applied: current.clone(),
            took: began.elapsed(),
        };
        Ok((
            Worker {
                session,
                policy,
                mode,
                flags,
                net,
                current,
                tid: crate::sys::guard::thread_id(),
                nftmon: Some(nftmon),
                netmon: Some(netmon),
                burst: None,
                retry: None,
                events,
            },
            started,
        ))
    }

    fn emit(&self, e: Event) {
        let _ = self.events.unbounded_send(e);
    }

    fn error(&mut self, what: String) {
        self.retry = Some(Instant::now() + RETRY);
        self.emit(Event::Error {
            what: format!("{what}; the table in place stays, retrying"),
        });
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let deadline = self.burst.as_ref().map(Burst::deadline);
            let retry = self.retry;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Leave) => {
                        self.emit(Event::Left { mode: self.mode.clone() });
                        return;
                    }
                    Some(Command::Update(policy, reply)) => {
                        let began = Instant::now();
                        let r = self.update(policy);
                        if let Ok(applied) = &r {
                            self.emit(Event::Updated { applied: applied.clone(), took: began.elapsed() });
                        }
                        let _ = reply.send(r);
                    }
                    Some(Command::Stop(reply)) => {
                        let removed = take_lock().and_then(|held| {
                            Ok(engine::remove_in(&mut self.session, plan::TABLE, &held)?)
                        });
                        match removed {
                            Ok(removed) => {
                                self.emit(Event::Stopped { removed });
                                let _ = reply.send(Ok(removed));
                                return;
                            }
                            Err(e) => {
                                self.emit(Event::Error { what: format!("could not remove the table ({e}); the guard keeps it") });
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                },
                notice = next_notice(&mut self.netmon) => {
                    if notice.is_none() {
                        // The subscription ended: read the network anew, subscribe again at
                        // the next retry.
                        self.netmon = None;
                        self.error("network notices stopped".to_string());
                    }
                    let now = Instant::now();
                    match &mut self.burst {
                        Some(b) => { b.last = now; b.notices += 1; }
                        None => self.burst = Some(Burst { first: now, last: now, notices: 1 }),
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far).into()), if deadline.is_some() => {
                    if let Some(b) = self.burst.take() {
                        self.replan(b).await;
                    }
                }
                notices = next_commits(&mut self.nftmon) => match notices {
                    Ok(list) => {
                        for n in list {
                            self.on_nft(n);
                        }
                    }
                    Err(e) => {
                        // Subscribe again at the next retry; meanwhile, check the table.
                        self.nftmon = None;
                        self.error(format!("nftables notifications failed ({e})"));
                        self.check(Changer::default(), true);
                    }
                },
                _ = tokio::time::sleep_until(retry.unwrap_or_else(far).into()), if retry.is_some() => {
                    self.retry = None;
                    self.resubscribe();
                    let now = Instant::now();
                    self.replan(Burst { first: now, last: now, notices: 0 }).await;
                    if self.retry.is_none() {
                        self.check(Changer::default(), false);
                    }
                }
            }
        }
    }

    /// Opens the subscriptions that broke.
    fn resubscribe(&mut self) {
        if self.nftmon.is_none() {
            match NftMonitor::open(plan::TABLE) {
                Ok(m) => self.nftmon = Some(m),
                Err(e) => self.error(format!(
                    "could not subscribe to nftables notifications again ({e})"
                )),
            }
        }
        if self.netmon.is_none() {
            match NetMonitor::open() {
                Ok(m) => self.netmon = Some(m),
                Err(e) => self.error(format!(
                    "could not subscribe to network notices again ({e})"
                )),
            }
        }
    }

    /// Applies `rs` through the owning session, holding the command lock (`held`).
    fn apply(&mut self, rs: &Ruleset, held: &NamespaceLock) -> Result<Applied, Error> {
        let applied = settle(
            engine::apply_in(&mut self.session, rs, self.flags, held),
            rs,
        )?;
        self.current = applied.clone();
        Ok(applied)
    }

    fn update(&mut self, policy: Policy) -> Result<Applied, Error> {
        let rs = plan::plan(&policy, &self.net)?;
        let held = take_lock()?;
        let applied = self.apply(&rs, &held)?;
        self.policy = policy;
        Ok(applied)
    }

    /// Reads the network again after a burst of notices, and re-applies if the plan changed.
    async fn replan(&mut self, burst: Burst) {
        match discovery::discover().await {
            Ok(net) => self.net = net,
            Err(e) => return self.error(format!("could not read the network ({e})")),
        }
        let rs = match plan::plan(&self.policy, &self.net) {
            Ok(rs) => rs,
            Err(e) => return self.error(format!("no plan fits the network as it is now ({e})")),
        };
        let comment = match engine::comment_of(&rs) {
            Ok((c, _)) => c,
            Err(e) => return self.error(Error::from(e).to_string()),
        };
        let replanned = if comment == self.current.comment {
            None
        } else {
            match take_lock().and_then(|held| self.apply(&rs, &held)) {
                Ok(a) => Some(a),
                Err(e) => return self.error(format!("could not apply the new plan ({e})")),
            }
        };
        if burst.notices > 0 || replanned.is_some() {
            self.emit(Event::NetworkChanged {
                notices: burst.notices,
                replanned,
                took: burst.first.elapsed(),
            });
        }
    }

    fn on_nft(&mut self, notice: Notice) {
        match notice {
            Notice::Commit { by, .. } if by.pid == Some(self.tid) => {}
            // Deleted: nothing to read back, put it back at once.
            Notice::Commit {
                by, deleted: true, ..
            } => match take_lock() {
                Ok(held) => self.repair(by, "it was deleted".to_string(), Instant::now(), &held),
                Err(e) => self.error(format!("could not repair the deleted table ({e})")),
            },
            Notice::Commit { by, touched, .. } => self.check(by, touched),
            Notice::Lost => self.check(Changer::default(), true),
        }
    }

    /// Reads the table back after another program's commit; puts it back if it changed.
    /// Reports the commit when `report` or when anything had to be done. Holds the command
    /// lock for the read-back and the repair.
    fn check(&mut self, by: Changer, report: bool) {
        let began = Instant::now();
        let held = match take_lock() {
            Ok(l) => l,
            Err(e) => return self.error(format!("could not check the table ({e})")),
        };
        let kernel = match readback::read_table(plan::TABLE) {
            Ok(k) => k,
            Err(e) => return self.error(format!("could not read the table back ({e})")),
        };
        let what = match &kernel {
            Some(k)
                if k.comment.as_deref() == Some(self.current.comment.as_str())
                    && k.snapshot.fingerprint() == self.current.fingerprint =>
            {
                if report || by.pid.is_some() {
                    self.emit(Event::Intact { by });
                }
                return;
            }
            None => "it was deleted".to_string(),
            Some(k) if k.comment.as_deref() != Some(self.current.comment.as_str()) => {
                "its comment was changed".to_string()
            }
            Some(k) => match plan::plan(&self.policy, &self.net)
                .ok()
                .and_then(|rs| readback::snapshot_of(&rs).ok())
            {
                Some(expected) => k.snapshot.describe_difference(&expected),
                None => "its rules were changed".to_string(),
            },
        };
        self.repair(by, what, began, &held);
    }

    /// Puts the table back after `by` changed it (`what`), noticed at `began`, holding the
    /// command lock (`held`).
    fn repair(&mut self, by: Changer, what: String, began: Instant, held: &NamespaceLock) {
        let rs = match plan::plan(&self.policy, &self.net) {
            Ok(rs) => rs,
            Err(e) => return self.error(format!("no plan to repair the table with ({e})")),
        };
        match self.apply(&rs, held) {
            Ok(applied) => self.emit(Event::Repaired {
                by,
                what,
                applied,
                took: began.elapsed(),
            }),
            Err(e) => self.error(format!("could not repair the table ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::discovery::{Interface, Prefix};
    use crate::nft::transport::Generation;

    /// The plan of a blocking policy (what `firewall guard` without gateways keeps) for a
    /// host with only loopback.
    fn ruleset() -> Ruleset {
        let net = Network {
            interfaces: vec![Interface {
                name: "lo".into(),
                index: 1,
                prefixes: vec![Prefix::new("127.0.0.1".parse().unwrap(), 8)],
            }],
            default_v4: None,
            default_v6: None,
            ipv6: true,
        };
        let policy = Policy::builder()
            .mode(crate::policy::Mode::Block)
            .build()
            .unwrap();
        plan::plan(&policy, &net).unwrap()
    }

    #[test]
    fn another_programs_commit_right_after_the_guards_is_not_the_guards_failure() {
        let rs = ruleset();
        let (comment, fingerprint) = engine::comment_of(&rs).unwrap();
        let raced = settle(
            Err(engine::Error::ChangedAfterUs {
                ours: Generation(7),
                now: Generation(8),
                what: "table inet bitmask is missing".into(),
            }),
            &rs,
        )
        .expect("a change after the guard's commit is not the guard's failure");
        assert_eq!(
            raced,
            Applied {
                fingerprint,
                comment,
                generation: Generation(7),
                verified_by: engine::Verification::ReadBack,
            },
            "the guard keeps what it committed, and repairs on that program's notification"
        );
        let broken = settle(Err(engine::Error::NotVerified("x".into())), &rs);
        assert!(matches!(broken, Err(Error::NotVerified(_))), "{broken:?}");
        let busy = settle(
            Err(engine::Error::Lock(crate::nft::lock::LockError::Busy {
                waited: Duration::from_secs(5),
            })),
            &rs,
        );
        assert!(matches!(busy, Err(Error::Lock(_))), "{busy:?}");
    }
}

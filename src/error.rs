//! The library's error type. The CLI turns each into one line and an exit code.
//!
//! It sits above every layer (it names the errors of the firewalls and of the email table);
//! the layers below return their own types ([`crate::nft::engine::Error`],
//! [`TransportError`]), which convert into it.

use crate::email::UidError;
use crate::firewall::discovery::DiscoveryError;
use crate::firewall::guard::GuardError;
use crate::firewall::plan::PlanError;
use crate::firewall::policy::PolicyError;
use crate::nft::engine::Error as EngineError;
use crate::nft::lock::LockError;
use crate::nft::transport::{Generation, TransportError};

/// Everything that can go wrong in the firewall engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input was invalid; nothing was changed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No ruleset could be planned for this network; nothing was changed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The network could not be read; nothing was changed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The kernel could not be reached or refused the ruleset.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The mail user given to the email firewall is not a uid or a known user; nothing was
    /// changed.
    #[error(transparent)]
    Uid(#[from] UidError),
    /// Changing the firewall needs root.
    #[error("must be run as root: only root can read and change the firewall (try sudo or pkexec); --dry-run shows the plan without root")]
    NotRoot,
    /// `BITMASK_ROOT_REQUIRE_NETNS` is set and this is the machine's initial namespace.
    #[error("refusing to touch this network namespace: BITMASK_ROOT_REQUIRE_NETNS protects it (or is not an inode number); run inside a test namespace (ip netns exec NAME ...)")]
    InitialNamespace,
    /// The transaction committed, nothing was committed after it, and yet the table read back
    /// differs from the plan.
    #[error("the firewall was applied but the kernel holds something else ({0}); run the command again, and report a bug if this repeats")]
    NotVerified(String),
    /// A sysctl could not be written.
    #[error("could not write {path} ({source})")]
    Sysctl {
        /// The file.
        path: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The guard could not start, or could not be reached.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The running table could not be read back as rules.
    #[error(transparent)]
    Decode(#[from] crate::nft::decode::DecodeError),
    /// A packet could not be walked through the rules.
    #[error(transparent)]
    Eval(#[from] crate::nft::eval::EvalError),
    /// The async runtime could not start.
    #[error("could not start the async runtime ({0})")]
    Runtime(#[source] std::io::Error),
    /// The transaction committed, then another program changed nftables and the table with it
    /// before it was read back.
    #[error("the firewall was applied, but another program changed nftables right after us (generation {ours} was ours, {now} is current): {what}; find what else manages nftables here, then run the command again")]
    ChangedAfterUs {
        /// The generation our commit produced.
        ours: Generation,
        /// The generation the table was read back at.
        now: Generation,
        /// How the table differs from what we committed.
        what: String,
    },
    /// The namespace's command lock could not be taken (another command runs, or the lock
    /// directory is unsafe); nothing was changed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Transport(t) => Error::Transport(t),
            EngineError::InitialNamespace => Error::InitialNamespace,
            EngineError::NotVerified(what) => Error::NotVerified(what),
            EngineError::Sysctl { path, source } => Error::Sysctl { path, source },
            EngineError::ChangedAfterUs { ours, now, what } => {
                Error::ChangedAfterUs { ours, now, what }
            }
            EngineError::Lock(e) => Error::Lock(e),
        }
    }
}

impl Error {
    /// The exit code for the command line: 2 for bad input, 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Policy(_) => 2,
            Error::Uid(e) => e.exit_code(),
            Error::Guard(e) => e.exit_code(),
            _ => 1,
        }
    }
}

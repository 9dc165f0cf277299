//! The launcher's error type. Each variant's message is one line that says what is wrong
//! and what is allowed; the CLI prints it as `bitmask-root: {error}`.

use std::path::PathBuf;

/// Everything that can go wrong in `openvpn start` / `openvpn stop`.
///
/// User-supplied words are printed with Rust's `{:?}` escaping so that control characters
/// cannot reach the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A word that is not a flag where a flag was expected (before the first flag only
    /// `restart` and an allowed openvpn path may appear).
    #[error("openvpn start: expected an openvpn option starting with `--`, got {word:?}; only `restart` and an allowed openvpn path may come before the first option")]
    NotAFlag {
        /// The offending word.
        word: String,
    },

    /// A flag that is not on the allow list.
    #[error("openvpn start: option {flag:?} is not allowed; allowed options: {allowed}")]
    UnknownFlag {
        /// The flag as given.
        flag: String,
        /// Comma-separated list of the allowed flags.
        allowed: String,
    },

    /// A flag with too few or too many values.
    #[error("openvpn start: {flag} takes {expected}, got {got} value(s)")]
    WrongCount {
        /// The flag.
        flag: &'static str,
        /// What it takes, e.g. `3 values (IP PORT PROTO)`.
        expected: String,
        /// How many values were given.
        got: usize,
    },

    /// A value of the wrong type.
    #[error("openvpn start: bad value {value:?} for {flag}: {reason}; expected {expected}")]
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
        /// What this position accepts.
        expected: String,
    },

    /// A required flag is missing.
    #[error("openvpn start: {0}")]
    Missing(&'static str),

    /// The leading openvpn path is not one of the allowed binaries.
    #[error("openvpn start: openvpn binary {given:?} is not allowed; allowed: {allowed}")]
    BinaryNotAllowed {
        /// The path as given.
        given: String,
        /// The allowed paths.
        allowed: String,
    },

    /// No usable openvpn binary is installed, or the installed one is unsafe.
    #[error("openvpn start: no usable openvpn binary: {0}")]
    NoBinary(String),

    /// The environment names the invoking user inconsistently or not at all.
    #[error("openvpn: cannot tell who invoked bitmask-root: {0}")]
    Environment(String),

    /// An openvpn started by us is still running.
    #[error("openvpn start: openvpn is already running (pid {pid}); run `bitmask-root openvpn stop` first")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },

    /// The pid file or its directory could not be used.
    #[error("openvpn: pid file {path}: {reason}")]
    PidFile {
        /// The path involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// `execve` of openvpn failed.
    #[error("openvpn start: could not execute {path}: {source}")]
    Exec {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A process could not be stopped.
    #[error("openvpn stop: could not stop openvpn (pid {pid}): {reason}")]
    StopFailed {
        /// Its pid.
        pid: u32,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Exit code for the CLI: 2 for usage and validation errors (the caller's arguments are
    /// wrong), 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotAFlag { .. }
            | Error::UnknownFlag { .. }
            | Error::WrongCount { .. }
            | Error::BadValue { .. }
            | Error::Missing(_)
            | Error::BinaryNotAllowed { .. } => 2,
            Error::NoBinary(_)
            | Error::Environment(_)
            | Error::AlreadyRunning { .. }
            | Error::PidFile { .. }
            | Error::Exec { .. }
            | Error::StopFailed { .. } => 1,
        }
    }
}

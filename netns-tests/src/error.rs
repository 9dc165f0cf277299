//! The harness's error type.

use std::fmt;

/// An error from the harness: a namespace that could not be created, a command that failed,
/// a socket that could not be opened. The message says what was being done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    msg: String,
}

/// `Result` with the harness's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Error { msg: msg.into() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// Adds context to an I/O error (or any displayable error).
pub(crate) trait Context<T> {
    /// Wraps the error with `what` in front of it.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(format!("{}: {e}", what())))
    }
}

//! Errors of configuration rendering.

use super::parameters::MAX_BACKENDS;

/// Errors of configuration rendering; each names what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The catalog version is not a version number.
    #[error("Pgpool version {version:?} is not a version number like 4.5.3")]
    InvalidVersion {
        /// The text given.
        version: String,
    },
    /// The version is older than we can render for.
    #[error("Pgpool version {version} is not supported: the oldest supported version is {minimum}")]
    UnsupportedVersion {
        /// The version given.
        version: String,
        /// [`MIN_SUPPORTED`].
        minimum: String,
    },
    /// No backend at all.
    #[error("no backend: pgpool needs at least one PostgreSQL server")]
    NoBackends,
    /// More backends than pgpool supports.
    #[error("{count} backends given, pgpool supports at most {MAX_BACKENDS}")]
    TooManyBackends {
        /// Number given.
        count: usize,
    },
    /// A backend is unusable.
    #[error("backend {index}: {reason}")]
    InvalidBackend {
        /// Position in the backend list (the pgpool backend number).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A user name or password cannot be written to the auth files.
    #[error("credentials of {what}: {reason}")]
    InvalidCredentials {
        /// Which credentials (`backend user`, `pcp user`, `user "x"`).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The same database user twice with different passwords.
    #[error("user {user:?} is given twice with different passwords")]
    DuplicateUser {
        /// The user name.
        user: String,
    },
    /// The pool key is unusable.
    #[error("pool key: {reason}")]
    InvalidPoolKey {
        /// What is wrong.
        reason: String,
    },
    /// A path is not absolute or not writable into pgpool.conf.
    #[error("path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A port or sizing number is out of range.
    #[error("{field}: {reason}")]
    InvalidSetting {
        /// Which setting.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A user override names a parameter that is not a valid pgpool parameter name.
    #[error("pgpool.conf override {key:?}: not a valid parameter name")]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// A user override sets a parameter the operator manages.
    #[error(
        "pgpool.conf override {key:?} is managed by the operator (the pod's ports, sockets and files depend on it); remove it from the configuration"
    )]
    ManagedParameter {
        /// The key.
        key: String,
    },
    /// A value cannot be written safely into pgpool.conf.
    #[error("pgpool.conf value of {key:?} cannot be used: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A user's pgpool.conf text does not parse.
    #[error("pgpool.conf line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

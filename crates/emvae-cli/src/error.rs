//! Errors of the command line, and their exit codes: 2 for anything the user must fix (arguments,
//! config, data, checkpoint), 1 for failures of the machine (I/O) or of emvae itself.

use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// Bad input: exit code 2.
    User(String),
    /// Something failed that the input did not cause: exit code 1.
    Runtime(String),
}

impl CliError {
    pub fn user(message: impl fmt::Display) -> Self {
        CliError::User(message.to_string())
    }

    pub fn runtime(message: impl fmt::Display) -> Self {
        CliError::Runtime(message.to_string())
    }

    /// The same kind of error (and exit code) with its message rewritten by `f`.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            CliError::User(m) => CliError::User(f(m)),
            CliError::Runtime(m) => CliError::Runtime(f(m)),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::User(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::User(m) | CliError::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<emvae_core::config::ConfigError> for CliError {
    fn from(e: emvae_core::config::ConfigError) -> Self {
        CliError::user(format!("config error: {e}"))
    }
}

impl From<emvae_core::data::DataError> for CliError {
    fn from(e: emvae_core::data::DataError) -> Self {
        CliError::user(format!("data error: {e}"))
    }
}

impl From<emvae_core::run::RunIoError> for CliError {
    fn from(e: emvae_core::run::RunIoError) -> Self {
        CliError::runtime(format!("cannot write {e}"))
    }
}

pub type CliResult<T> = Result<T, CliError>;

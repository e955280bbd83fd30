//! What reading and validating report: one problem per setting at fault.

use std::fmt;

use crate::problems::{Problem, Problems};

/// One configuration problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable (or setting) at fault.
    pub key: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl ConfigProblem {
    pub(super) fn new(key: &str, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl Problem for ConfigProblem {
    const HEADING: &'static str = "invalid configuration";
}

/// The configuration is invalid; every problem is listed.
pub type ConfigError = Problems<ConfigProblem>;

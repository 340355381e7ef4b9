//! How a process is launched: the options every builder shares (extra
//! arguments and environment, a wrapper command, a log file, a clean
//! environment, the start timeout), and the `launch_methods!` macro that
//! gives each builder the same setters for them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::error::Result;
use crate::log::ProcessLog;

/// How long a process may take to become ready, unless a builder says otherwise.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of one launch.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// Arguments after the builder's own.
    pub(crate) args: Vec<OsString>,
    /// Environment variables added.
    pub(crate) envs: Vec<(OsString, OsString)>,
    /// A command to run the program under (`valgrind --tool=massif`): its
    /// first word is what is spawned, the program and its arguments follow.
    pub(crate) wrapper: Vec<OsString>,
    /// Directory of a `<name>.log` copy of the output.
    pub(crate) log_dir: Option<PathBuf>,
    /// Drop the inherited `JETWAY_*` and `RUST_LOG` variables.
    pub(crate) clean_env: bool,
    pub(crate) start_timeout: Duration,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            envs: Vec::new(),
            wrapper: Vec::new(),
            log_dir: None,
            clean_env: false,
            start_timeout: START_TIMEOUT,
        }
    }
}

impl Launch {
    /// The command running `program` with `first_args`, then the extra
    /// arguments, under the wrapper if there is one.
    pub(crate) fn command(&self, program: &Path, first_args: &[OsString]) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((tool, tool_args)) => {
                let mut cmd = Command::new(tool);
                cmd.args(tool_args).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.args(first_args).args(&self.args);
        if self.clean_env {
            for (key, _) in std::env::vars_os() {
                let k = key.to_string_lossy();
                if k.starts_with("JETWAY_") || k == "RUST_LOG" {
                    cmd.env_remove(&key);
                }
            }
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The log for a process called `name`: in memory, and in
    /// `<log dir>/<name>.log` if a log directory was given.
    pub(crate) fn log(&self, name: &str) -> Result<ProcessLog> {
        match &self.log_dir {
            Some(dir) => ProcessLog::to_file(name, &dir.join(format!("{name}.log"))),
            None => Ok(ProcessLog::new(name)),
        }
    }
}

/// The [`Launch`] setters, for a builder with a `launch: Launch` field.
macro_rules! launch_methods {
    () => {
        /// Append an extra command-line argument.
        pub fn arg(mut self, arg: impl Into<std::ffi::OsString>) -> Self {
            self.launch.args.push(arg.into());
            self
        }

        /// Append extra command-line arguments.
        pub fn args<I, S>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<std::ffi::OsString>,
        {
            self.launch.args.extend(args.into_iter().map(Into::into));
            self
        }

        /// Set an environment variable for the process.
        pub fn env(
            mut self,
            key: impl Into<std::ffi::OsString>,
            value: impl Into<std::ffi::OsString>,
        ) -> Self {
            self.launch.envs.push((key.into(), value.into()));
            self
        }

        /// Run the program under this command (its words: tool, then the
        /// tool's arguments), e.g. a profiler.
        pub fn wrapper<I, S>(mut self, words: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<std::ffi::OsString>,
        {
            self.launch.wrapper = words.into_iter().map(Into::into).collect();
            self
        }

        /// Also write the output to `<dir>/<name>.log`.
        pub fn log_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.launch.log_dir = Some(dir.into());
            self
        }

        /// Do not pass on this process's `JETWAY_*` and `RUST_LOG`
        /// variables: only the builder's flags and `env` configure it.
        pub fn clean_env(mut self) -> Self {
            self.launch.clean_env = true;
            self
        }

        /// How long to wait for readiness (default [`crate::START_TIMEOUT`]).
        pub fn start_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.launch.start_timeout = timeout;
            self
        }
    };
}

pub(crate) use launch_methods;

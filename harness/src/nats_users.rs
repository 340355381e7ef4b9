//! The shipped least-privilege NATS users, for tests.
//!
//! `deploy/nats/permissions.conf` gives gateways, workers and operators one
//! NATS user each, with only the subjects their role needs. A server built
//! with [`crate::NatsServerBuilder::jetway_users`] loads that very file,
//! with fixed test passwords, plus one unrestricted `harness` user bound to
//! connections without credentials (`no_auth_user`), so that a test's own
//! NATS client keeps working while the processes under test are restricted.
//!
//! `JETWAY_TEST_NATS_USERS=1` turns this on for every server started
//! without a config or extra flags, and makes gateways, workers and the CLI
//! log in as their role: the whole suite then runs on least privilege, and
//! a server that logged a permission violation fails its test when dropped.

use crate::bins::workspace_root;
use crate::error::{HarnessError, Result};

/// Set to `1` to run every test on the shipped NATS users.
pub const ENV: &str = "JETWAY_TEST_NATS_USERS";

/// Where the permissions live in the repository.
pub const PERMISSIONS_FILE: &str = "deploy/nats/permissions.conf";

/// What nats-server logs when a client oversteps its permissions.
pub const VIOLATION_MARKER: &str = "Violation";

/// Whether [`ENV`] asks for least privilege everywhere.
pub fn enabled() -> bool {
    std::env::var_os(ENV).is_some_and(|v| v == "1")
}

/// A Jetway role's NATS user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsRole {
    Gateway,
    Worker,
    Operator,
}

impl NatsRole {
    pub const ALL: [NatsRole; 3] = [Self::Gateway, Self::Worker, Self::Operator];

    /// The user name in the permissions file.
    pub fn user(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Worker => "worker",
            Self::Operator => "operator",
        }
    }

    /// The test password (never a real one).
    pub fn password(self) -> &'static str {
        match self {
            Self::Gateway => "test-gateway-password",
            Self::Worker => "test-worker-password",
            Self::Operator => "test-operator-password",
        }
    }

    /// The nats-server variable the permissions file reads the password from.
    fn password_var(self) -> &'static str {
        match self {
            Self::Gateway => "NATS_GATEWAY_PASSWORD",
            Self::Worker => "NATS_WORKER_PASSWORD",
            Self::Operator => "NATS_OPERATOR_PASSWORD",
        }
    }

    /// The variables a Jetway process (or the CLI) logs in with.
    pub fn client_env(self) -> [(&'static str, &'static str); 2] {
        [
            ("JETWAY_NATS_USER", self.user()),
            ("JETWAY_NATS_PASSWORD", self.password()),
        ]
    }
}

/// The variables nats-server needs to load the permissions file.
pub fn server_env() -> Vec<(&'static str, &'static str)> {
    NatsRole::ALL
        .iter()
        .map(|r| (r.password_var(), r.password()))
        .collect()
}

/// Whether a launch's variables already choose how to log in to NATS.
pub(crate) fn has_credentials<K: AsRef<std::ffi::OsStr>>(
    keys: impl IntoIterator<Item = K>,
) -> bool {
    keys.into_iter().any(|k| {
        let k = k.as_ref().to_string_lossy();
        matches!(
            k.as_ref(),
            "JETWAY_NATS_USER"
                | "JETWAY_NATS_TOKEN"
                | "JETWAY_NATS_CREDS_FILE"
                | "JETWAY_NATS_NKEY_SEED_FILE"
        )
    })
}

/// The server configuration: the shipped file, plus the harness's own
/// unrestricted user for connections without credentials.
pub fn server_config() -> Result<String> {
    let path = workspace_root().join(PERMISSIONS_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(HarnessError::io(format!("reading {}", path.display())))?;
    const USERS: &str = "\n  users = [\n";
    if !text.contains(USERS) {
        return Err(HarnessError::NotFound {
            what: format!("a `users = [` list in {}", path.display()),
            hint: "the harness adds its own user to that list".into(),
        });
    }
    let text = text.replacen(
        USERS,
        "\n  users = [\n    { user: harness, password: \"harness-only-in-tests\" }\n",
        1,
    );
    Ok(format!("no_auth_user: harness\n{text}"))
}

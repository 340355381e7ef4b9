//! Which scopes a request needs: every request's (`auth_scopes`), its
//! method's (`auth_method_scopes`) and, for `tools/call`, its tool's
//! (`auth_tool_scopes`). Pure, so it is tested here.

use super::settings::AuthConfig;
use std::collections::BTreeSet;

/// The scopes a request with `method` (and `tool`, for `tools/call`) needs.
pub fn required<'a>(cfg: &'a AuthConfig, method: &str, tool: Option<&str>) -> Vec<&'a str> {
    let mut need: Vec<&str> = cfg.scopes.iter().map(String::as_str).collect();
    need.extend(
        cfg.method_scopes
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, s)| s.as_str()),
    );
    if let Some(tool) = tool {
        need.extend(
            cfg.tool_scopes
                .iter()
                .filter(|(t, _)| t == tool)
                .map(|(_, s)| s.as_str()),
        );
    }
    need.sort_unstable();
    need.dedup();
    need
}

/// The required scopes `granted` lacks (empty: allowed).
pub fn missing<'a>(
    cfg: &'a AuthConfig,
    granted: &BTreeSet<String>,
    method: &str,
    tool: Option<&str>,
) -> Vec<&'a str> {
    required(cfg, method, tool)
        .into_iter()
        .filter(|s| !granted.contains(*s))
        .collect()
}

/// Every scope the configuration names, for `scopes_supported`.
pub fn all(cfg: &AuthConfig) -> Vec<&str> {
    let mut all: Vec<&str> = cfg
        .scopes
        .iter()
        .chain(cfg.method_scopes.iter().map(|(_, s)| s))
        .chain(cfg.tool_scopes.iter().map(|(_, s)| s))
        .map(String::as_str)
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> AuthConfig {
        AuthConfig {
            issuer: "https://idp".into(),
            jwks_url: None,
            audience: None,
            public_url: "https://mcp.example".into(),
            algorithms: vec![],
            leeway: Duration::ZERO,
            scopes: vec!["mcp".into()],
            method_scopes: vec![("tools/call".into(), "mcp:tools".into())],
            tool_scopes: vec![
                ("delete_all".into(), "admin".into()),
                ("delete_all".into(), "mcp:tools".into()),
            ],
            jwks_refresh: Duration::ZERO,
            fetch_timeout: Duration::ZERO,
            introspection: None,
        }
    }

    fn granted(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_request_method_and_tool_add_their_scopes() {
        let c = cfg();
        // (method, tool, granted, missing)
        type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            ("ping", None, &["mcp"], &[]),
            ("ping", None, &[], &["mcp"]),
            ("tools/list", None, &["mcp"], &[]),
            ("tools/call", Some("echo"), &["mcp"], &["mcp:tools"]),
            ("tools/call", Some("echo"), &["mcp", "mcp:tools"], &[]),
            (
                "tools/call",
                Some("delete_all"),
                &["mcp", "mcp:tools"],
                &["admin"],
            ),
            (
                "tools/call",
                Some("delete_all"),
                &["admin", "mcp", "mcp:tools"],
                &[],
            ),
            (
                "tools/call",
                Some("delete_all"),
                &[],
                &["admin", "mcp", "mcp:tools"],
            ),
        ];
        for (method, tool, have, lack) in cases {
            assert_eq!(
                missing(&c, &granted(have), method, *tool),
                *lack,
                "{method} {tool:?} with {have:?}"
            );
        }
        assert_eq!(all(&c), ["admin", "mcp", "mcp:tools"]);
    }
}

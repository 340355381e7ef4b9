//! Every setting of every Jetway binary, defined once: its key, which
//! binaries read it, its default and what it means ([`BUS`], [`GATEWAY`],
//! [`WORKER`], [`CLI`]; [`BINARIES`] says who reads which).
//!
//! Everything else follows from these tables or is checked against them:
//!
//! - the keys a loader accepts in a TOML file: [`super::Fields`] takes a
//!   [`Binary`], and reports a key its loader reads that the tables lack,
//!   and a key the tables list that its loader never reads;
//! - the `[default: …]` of every flag's `--help`, and the loaders' defaults:
//!   each binary's unit tests run [`check::help_defaults`] and
//!   [`check::loader_defaults`] (the bus settings: this crate's tests);
//! - README.md's configuration table, [`markdown_table`]:
//!   `tests/tests/config_table.rs` compares the two
//!   (`JETWAY_WRITE_README=1` rewrites the README's).

pub mod check;
mod markdown;
mod tables;

pub use markdown::markdown_table;
pub use tables::*;

/// One setting: the same key in TOML, as `JETWAY_<KEY>` and as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    /// The default as a flag or a `JETWAY_*` variable gives it (a list's
    /// items one by one); empty where there is no fixed value.
    pub default: &'static [&'static str],
    /// Shown after the default value (`off`), or in place of it where
    /// there is none (`the hostname`, `none`).
    pub note: Option<&'static str>,
    /// What it does, as the README says it.
    pub meaning: &'static str,
}

impl Setting {
    /// A setting whose default is `default` (one item unless it is a list).
    pub const fn new(
        key: &'static str,
        default: &'static [&'static str],
        meaning: &'static str,
    ) -> Self {
        Self {
            key,
            default,
            note: None,
            meaning,
        }
    }

    /// A setting without a fixed default; `what` says what applies instead.
    pub const fn without_value(
        key: &'static str,
        what: &'static str,
        meaning: &'static str,
    ) -> Self {
        Self {
            key,
            default: &[],
            note: Some(what),
            meaning,
        }
    }

    /// The same with a note after the default value.
    pub const fn noted(self, note: &'static str) -> Self {
        Self {
            note: Some(note),
            ..self
        }
    }

    /// The default as a flag value or `JETWAY_*` variable would give it
    /// (list items comma-separated); `None` without a fixed value.
    pub fn default_value(&self) -> Option<String> {
        (!self.default.is_empty()).then(|| self.default.join(","))
    }

    /// The default as `--help` shows it, in `[default: …]`.
    pub fn help_default(&self) -> String {
        self.shown(|item| item.to_owned())
    }

    /// The default as the README shows it (values as code).
    pub fn doc_default(&self) -> String {
        self.shown(|item| format!("`{item}`"))
    }

    fn shown(&self, item: impl Fn(&str) -> String) -> String {
        let values: Vec<String> = self.default.iter().map(|v| item(v)).collect();
        match (values.is_empty(), self.note) {
            (false, Some(note)) => format!("{} ({note})", values.join(", ")),
            (false, None) => values.join(", "),
            (true, note) => note.unwrap_or("none").to_owned(),
        }
    }
}

/// A binary's settings: the bus settings, its own, and keys it accepts in
/// its file without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// As the README's table names it.
    pub name: &'static str,
    pub own: &'static [Setting],
    pub accepts: &'static [&'static [Setting]],
}

impl Binary {
    /// Every setting the binary reads: the bus settings, then its own.
    pub fn reads(&self) -> impl Iterator<Item = &'static Setting> + use<> {
        BUS.iter().chain(self.own)
    }

    /// The setting the binary reads under `key`.
    pub fn setting(&self, key: &str) -> Option<&'static Setting> {
        self.reads().find(|s| s.key == key)
    }

    /// True if a TOML file for this binary may hold `key`.
    pub fn accepts_key(&self, key: &str) -> bool {
        self.setting(key).is_some() || self.accepts.iter().flat_map(|t| *t).any(|s| s.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn defaults_show_as_help_and_docs_say() {
        let origins = JETWAY_GATEWAY.setting("allowed_origins").expect("listed");
        assert_eq!(
            origins.help_default(),
            "http://localhost, http://127.0.0.1, http://[::1] (any port)"
        );
        assert_eq!(
            origins.doc_default(),
            "`http://localhost`, `http://127.0.0.1`, `http://[::1]` (any port)"
        );
        assert_eq!(
            origins.default_value().as_deref(),
            Some("http://localhost,http://127.0.0.1,http://[::1]")
        );
        let host = JETWAY_WORKER.setting("instance_id").expect("listed");
        assert_eq!(host.help_default(), "the hostname");
        assert_eq!(host.default_value(), None);
    }

    #[test]
    fn a_binary_lists_a_key_once_and_accepts_the_others() {
        for b in BINARIES {
            let mut seen = BTreeSet::new();
            for s in b.reads() {
                assert!(seen.insert(s.key), "{}: {} listed twice", b.name, s.key);
                assert!(
                    !s.key.is_empty() && s.key.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                    "{}: key {:?}",
                    b.name,
                    s.key
                );
            }
        }
        for key in ["upstream_url", "deadline_secs", "services", "listen"] {
            assert!(JETWAY_CLI.accepts_key(key), "{key}");
            assert!(JETWAY_CLI.setting(key).is_none(), "{key}");
        }
        assert!(!JETWAY_GATEWAY.accepts_key("upstream_url"));
    }
}

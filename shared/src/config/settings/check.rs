//! Checks of a binary's flags and loader against its settings table, for
//! the binaries' unit tests (each returns every problem found).

use super::Binary;
use std::{collections::BTreeSet, fmt::Debug};

/// Arguments of a command that are no settings.
const NOT_SETTINGS: &[&str] = &["help", "version", "config"];

/// Compares `cmd`'s flags with `binary`'s settings: every flag (but those
/// in `not_settings`) is a setting of the binary, every setting of its own
/// has a flag, and each flag's `--help` ends with `[default: …]` as the
/// table shows the default.
pub fn help_defaults(cmd: &clap::Command, binary: &Binary, not_settings: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut flagged = BTreeSet::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_SETTINGS.contains(&id) || not_settings.contains(&id) {
            continue;
        }
        let Some(setting) = binary.setting(id) else {
            problems.push(format!(
                "{}: the flag for `{id}` is no setting in its table",
                binary.name
            ));
            continue;
        };
        flagged.insert(id);
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let want = format!("[default: {}]", setting.help_default());
        if !help.trim_end().ends_with(&want) {
            problems.push(format!(
                "{}: --help of `{id}` should end with {want:?}: {help:?}",
                binary.name
            ));
        }
    }
    for s in binary.own {
        if !flagged.contains(s.key) {
            problems.push(format!("{}: `{}` has no flag", binary.name, s.key));
        }
    }
    problems
}

/// Compares `binary`'s loader with its table: for every setting of its own
/// with a default value, loading with the flag set to that value must give
/// what loading with nothing set does. `load` gets the flags (`--key
/// value`, named as `cmd` names them) and returns the loaded configuration.
pub fn loader_defaults<C: PartialEq + Debug>(
    cmd: &clap::Command,
    binary: &Binary,
    load: impl Fn(&[String]) -> Result<C, String>,
) -> Vec<String> {
    let base = match load(&[]) {
        Ok(c) => c,
        Err(e) => return vec![format!("{}: the defaults do not load: {e}", binary.name)],
    };
    let mut problems = Vec::new();
    for s in binary.own {
        let Some(value) = s.default_value() else {
            continue;
        };
        let Some(flag) = cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == s.key)
            .and_then(|a| a.get_long())
        else {
            problems.push(format!("{}: `{}` has no flag", binary.name, s.key));
            continue;
        };
        match load(&[format!("--{flag}"), value.clone()]) {
            Ok(c) if c == base => {}
            Ok(c) => problems.push(format!(
                "{}: `{}` defaults to {value:?} in its table, but the loader's default differs:\n  \
                 with --{flag} {value}: {c:?}\n  with nothing set: {base:?}",
                binary.name, s.key
            )),
            Err(e) => problems.push(format!(
                "{}: --{flag} {value} (the table's default) does not load: {e}",
                binary.name
            )),
        }
    }
    problems
}

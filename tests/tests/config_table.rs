//! README.md's configuration table is the settings tables of
//! `jetway_shared::config::settings` as `markdown_table` renders them: a
//! setting added, renamed, moved to another binary or given a new default
//! in code fails here until the README says the same. (The binaries' unit
//! tests hold their flags' `[default: …]` and their loaders' defaults to
//! the same tables.)
//!
//! `JETWAY_WRITE_README=1 cargo test -p jetway-tests --test config_table`
//! rewrites the README's table instead of failing; review the diff.

use anyhow::{Context, Result, bail};
use jetway_shared::config::settings::markdown_table;
use jetway_tests::workspace_root;

/// The lines around the generated table in README.md.
const BEGIN: &str = "<!-- The settings table below is generated from shared/src/config/settings/tables.rs: \
                     JETWAY_WRITE_README=1 cargo test -p jetway-tests --test config_table -->\n";
const END: &str = "<!-- end of the generated settings table -->\n";

#[test]
fn readme_configuration_table_is_the_settings_tables() -> Result<()> {
    let path = workspace_root().join("README.md");
    let readme =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (before, rest) = readme
        .split_once(BEGIN)
        .with_context(|| format!("README.md has no line {BEGIN:?} before its settings table"))?;
    let (table, after) = rest
        .split_once(END)
        .with_context(|| format!("README.md has no line {END:?} after its settings table"))?;
    let want = markdown_table();
    assert!(
        want.lines().count() > 20,
        "the settings tables are nearly empty:\n{want}"
    );
    if table == want {
        return Ok(());
    }
    if std::env::var("JETWAY_WRITE_README").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{before}{BEGIN}{want}{END}{after}"))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("rewrote the settings table in {}", path.display());
        return Ok(());
    }
    let only = |a: &str, b: &str| -> String {
        a.lines()
            .filter(|l| !b.lines().any(|m| m == *l))
            .map(|l| format!("  {l}\n"))
            .collect()
    };
    bail!(
        "README.md's settings table is not the one the code defines \
         (regenerate: JETWAY_WRITE_README=1 cargo test -p jetway-tests --test config_table)\n\
         only in README.md:\n{}only in the code:\n{}",
        only(table, &want),
        only(&want, table)
    );
}

//! README.md's configuration table, made from the settings tables.

use super::{BINARIES, Setting};

/// The Markdown table of every setting: one row per key, default and
/// meaning, naming the binaries that read it (`all` when every one does),
/// in the order of [`BINARIES`]. Ends with a newline.
pub fn markdown_table() -> String {
    // (setting, binaries reading it), first occurrence first.
    let mut rows: Vec<(&Setting, Vec<&str>)> = Vec::new();
    for binary in BINARIES {
        for s in binary.reads() {
            match rows.iter_mut().find(|(r, _)| *r == s) {
                Some((_, names)) => names.push(binary.name),
                None => rows.push((s, vec![binary.name])),
            }
        }
    }
    let mut out = String::from("| setting | binaries | default | meaning |\n|---|---|---|---|\n");
    for (s, names) in rows {
        let binaries = if names.len() == BINARIES.len() {
            "all".to_owned()
        } else {
            names.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {binaries} | {} | {} |\n",
            s.key,
            s.doc_default(),
            s.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_rows_are_merged_and_others_kept_apart() {
        let table = markdown_table();
        let rows = |key: &str| -> Vec<String> {
            table
                .lines()
                .filter(|l| l.starts_with(&format!("| `{key}` |")))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            rows("nats_url"),
            [
                "| `nats_url` | all | `nats://127.0.0.1:4222` | NATS server URL(s), comma-separated |"
            ]
        );
        assert_eq!(
            rows("grace_period_secs"),
            ["| `grace_period_secs` | gateway, worker | `20` | drain time on SIGTERM |"]
        );
        let listen = rows("listen");
        assert_eq!(listen.len(), 2, "{listen:?}");
        assert!(listen[0].contains("| gateway | `127.0.0.1:8080` |"));
        assert!(listen[1].contains("| worker | `127.0.0.1:9090` |"));
        assert_eq!(rows("service").len(), 2);
        assert!(rows("upstream_url")[0].contains("| worker | none |"));
    }
}

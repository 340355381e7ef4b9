//! Structural differences between a recorded and a redriven JSON-RPC
//! message, with volatile fields (instance names, clocks) told apart from
//! real changes.
//!
//! Strings that hold JSON (a tool's `content[].text` is often the JSON of
//! its structured result) are compared as JSON, so a changed `instance`
//! inside them is a volatile difference too, not a changed string.

use serde::Serialize;
use serde_json::Value;

/// Field names whose values change from run to run by nature.
pub const DEFAULT_VOLATILE: &[&str] = &[
    "instance",
    "timestamp",
    "uptime_seconds",
    "at",
    "sessions",
    "active_sessions",
];

/// One difference at a path such as `result.structuredContent.counter`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub path: String,
    pub recorded: Option<Value>,
    pub new: Option<Value>,
    /// Under a volatile field: expected to differ.
    pub volatile: bool,
}

/// Every difference between `recorded` and `new`.
pub fn diff(recorded: &Value, new: &Value, volatile: &[String]) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(String::new(), recorded, new, false, volatile, &mut out);
    out
}

fn walk(
    path: String,
    a: &Value,
    b: &Value,
    in_volatile: bool,
    volatile: &[String],
    out: &mut Vec<Difference>,
) {
    if a == b {
        return;
    }
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let v = in_volatile || volatile.iter().any(|f| f == k);
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(child(k), p, q, v, volatile, out),
                    (p, q) => out.push(Difference {
                        path: child(k),
                        recorded: p.cloned(),
                        new: q.cloned(),
                        volatile: v,
                    }),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(l), Some(r)) => walk(p, l, r, in_volatile, volatile, out),
                    (l, r) => out.push(Difference {
                        path: p,
                        recorded: l.cloned(),
                        new: r.cloned(),
                        volatile: in_volatile,
                    }),
                }
            }
        }
        (Value::String(x), Value::String(y)) => match (embedded_json(x), embedded_json(y)) {
            (Some(l), Some(r)) => walk(format!("{path}(json)"), &l, &r, in_volatile, volatile, out),
            _ => out.push(leaf(path, a, b, in_volatile)),
        },
        _ => out.push(leaf(path, a, b, in_volatile)),
    }
}

fn leaf(path: String, a: &Value, b: &Value, volatile: bool) -> Difference {
    Difference {
        path,
        recorded: Some(a.clone()),
        new: Some(b.clone()),
        volatile,
    }
}

/// A string holding a JSON object or array.
fn embedded_json(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volatile() -> Vec<String> {
        DEFAULT_VOLATILE.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn volatile_fields_are_marked_even_inside_json_text() {
        let a = json!({"result": {"content": [{"type": "text", "text": "{\"counter\":1,\"instance\":\"wk-1\"}"}],
                        "structuredContent": {"counter": 1, "instance": "wk-1"}}});
        let b = json!({"result": {"content": [{"type": "text", "text": "{\"counter\":1,\"instance\":\"wk-2\"}"}],
                        "structuredContent": {"counter": 1, "instance": "wk-2"}}});
        let d = diff(&a, &b, &volatile());
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| d.volatile), "{d:?}");
        assert_eq!(d[0].path, "result.content[0].text(json).instance");
    }

    #[test]
    fn real_changes_are_not_volatile() {
        let a = json!({"result": {"counter": 1, "extra": true}});
        let b = json!({"result": {"counter": 2}});
        let d = diff(&a, &b, &volatile());
        assert_eq!(
            d,
            vec![
                Difference {
                    path: "result.counter".into(),
                    recorded: Some(json!(1)),
                    new: Some(json!(2)),
                    volatile: false
                },
                Difference {
                    path: "result.extra".into(),
                    recorded: Some(json!(true)),
                    new: None,
                    volatile: false
                },
            ]
        );
        assert!(diff(&a, &a, &volatile()).is_empty());
    }
}

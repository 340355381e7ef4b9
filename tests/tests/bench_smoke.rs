//! The benchmark still works: `jetway-bench all --smoke` runs every scenario
//! (the claims and lease-renewal costs and the bridge included) with tiny counts against
//! real processes and reports numbers for each.
//! No timing is asserted — benchmarks measure, tests check behaviour.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use jetway_tests::{jetway_bin, nats::nats_server_bin};
use serde_json::Value;

/// A hang guard, not a timing assertion: smoke mode takes well under a minute.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn smoke_mode_reports_numbers_for_every_scenario() -> Result<()> {
    let bench = jetway_bin("jetway-bench")?;
    let bin_dir = bench.parent().context("binary directory")?.to_path_buf();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("smoke.json");
    let mut cmd = tokio::process::Command::new(&bench);
    cmd.arg("all")
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--nats-server")
        .arg(nats_server_bin()?)
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .context("jetway-bench --smoke did not finish")??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "jetway-bench all --smoke failed ({}):\n{stderr}",
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("## Targets"), "Markdown report: {stdout}");
    assert!(out.with_extension("md").is_file());

    let report: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    assert_eq!(report["smoke"], true);
    let s = &report["scenarios"];
    for name in [
        "tools_call",
        "idle_streams",
        "resume",
        "crash",
        "replay",
        "scaling",
        "claims",
        "renewals",
        "bridge",
    ] {
        assert!(
            s[name].is_object() && s[name].get("error").is_none(),
            "scenario {name}: {}",
            s[name]
        );
    }
    let positive = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0);
    let runs = s["tools_call"]["runs"]
        .as_array()
        .context("tools_call runs")?;
    assert!(!runs.is_empty());
    let configs: std::collections::BTreeSet<&str> =
        runs.iter().filter_map(|r| r["config"].as_str()).collect();
    assert_eq!(
        configs.len(),
        3,
        "Jetway 1+1, Jetway 2+2 and the baseline: {configs:?}"
    );
    for run in runs {
        assert_eq!(run["errors"], 0, "tools_call run: {run}");
        assert!(positive(&run["latency"]["p50_ms"]), "tools_call run: {run}");
        assert!(positive(&run["throughput_rps"]), "tools_call run: {run}");
    }
    for server in s["idle_streams"]["servers"].as_array().context("servers")? {
        assert!(positive(&server["rss_open_mib"]), "idle server: {server}");
    }
    assert!(s["idle_streams"]["servers"][0]["jetstream_consumers"].is_u64());
    assert!(positive(&s["resume"]["jetway"]["latency"]["p99_ms"]));
    assert!(positive(&s["resume"]["baseline"]["latency"]["p99_ms"]));
    let crashes = s["crash"]["samples"].as_array().context("crash samples")?;
    assert!(!crashes.is_empty());
    for c in crashes {
        assert!(positive(&c["redelivered_secs"]), "crash sample: {c}");
        assert!(positive(&c["result_secs"]), "crash sample: {c}");
    }
    assert!(positive(&s["replay"]["consumer_rate"]));
    for run in s["scaling"]["runs"].as_array().context("scaling runs")? {
        assert_eq!(run["errors"], 0, "scaling run: {run}");
        assert!(positive(&run["throughput_rps"]), "scaling run: {run}");
    }
    let claims = s["claims"]["rows"].as_array().context("claims rows")?;
    assert_eq!(claims.len(), 3, "claim, plain publish, request publish");
    for row in claims {
        assert!(positive(&row["writes"]), "claims row: {row}");
        assert!(positive(&row["latency"]["p50_ms"]), "claims row: {row}");
    }
    let renewals = &s["renewals"];
    assert!(positive(&renewals["calls"]), "renewals: {renewals}");
    assert_eq!(
        renewals["succeeded"], renewals["calls"],
        "renewals: {renewals}"
    );
    assert_eq!(renewals["failed"], 0, "renewals: {renewals}");
    assert!(positive(&renewals["loaded_secs"]), "renewals: {renewals}");
    assert!(
        !renewals["cpu"]
            .as_array()
            .context("renewals cpu")?
            .is_empty(),
        "renewals: {renewals}"
    );
    let levels = s["bridge"]["levels"].as_array().context("bridge levels")?;
    assert_eq!(levels.len(), 2, "c=1 and c=16: {levels:?}");
    for level in levels {
        for side in ["direct", "bridged"] {
            let v = &level[side];
            assert_eq!(v["errors"], 0, "bridge {side}: {level}");
            assert!(positive(&v["p50_ms"]), "bridge {side}: {level}");
            assert!(positive(&v["throughput_rps"]), "bridge {side}: {level}");
            assert!(positive(&v["samples"]), "bridge {side}: {level}");
        }
        assert!(level["p50_overhead_ms"].is_f64(), "bridge: {level}");
        assert!(positive(&level["throughput_ratio"]), "bridge: {level}");
    }
    for run in s["bridge"]["runs"].as_array().context("bridge runs")? {
        assert_eq!(run["errors"], 0, "bridge run: {run}");
    }
    assert!(!report["targets"].as_array().context("targets")?.is_empty());
    Ok(())
}

//! Metrics, end to end: a real Prometheus (Debian's package, installed by
//! `scripts/install-prometheus.sh`) scrapes 2 gateways and 2 workers every
//! second while the test drives known traffic, and PromQL queries against
//! its HTTP API must return the counts that traffic implies: requests by
//! method, an error class, a resume, a re-run after a worker is SIGKILLed
//! mid-call. Then every metric the Grafana dashboard and the alert rules
//! query must be among the names Prometheus scraped, and `promtool check
//! rules` must accept the rules. A bridge worker counts its upstream requests.
//!
//! Conditions are awaited (Prometheus is polled until the value appears,
//! with a deadline), never slept for.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use jetway_tests::{Gateway, McpClient, NatsServer, ResponseStream, Worker, eventually_msg};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Bound on a PromQL value appearing (scrapes every second, so a few).
const METRIC_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on one SSE event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// A Prometheus server scraping `targets`, on a temp dir, loopback only.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping each `(job, host:port)` every second.
    async fn start(targets: &[(&str, String)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut jobs = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for (job, target) in targets {
            jobs.entry(job).or_default().push(target);
        }
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, targets) in &jobs {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = jetway_tests::free_port()?;
        let child = tokio::process::Command::new(prometheus_bin("prometheus")?)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus (scripts/install-prometheus.sh installs it)")?;
        let p = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        eventually_msg("prometheus ready", METRIC_TIMEOUT, || async {
            let r = p.http.get(format!("{}/-/ready", p.url)).send().await;
            r.map(|r| r.status() == StatusCode::OK).unwrap_or(false)
        })
        .await?;
        Ok(p)
    }

    /// The value of an instant `query` returning one sample; `None` if it
    /// returns none.
    async fn value(&self, query: &str) -> Result<Option<f64>> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/query?query={}", self.url, encode(query)))
            .send()
            .await?
            .json()
            .await?;
        ensure!(body["status"] == "success", "{query}: {body}");
        let result = body["data"]["result"]
            .as_array()
            .context("a vector result")?;
        match result.as_slice() {
            [] => Ok(None),
            [one] => {
                let v = one["value"][1].as_str().context("a sample value")?;
                Ok(Some(v.parse()?))
            }
            _ => bail!("{query}: more than one series: {body}"),
        }
    }

    /// Waits until `query` returns exactly `want`.
    async fn expect(&self, query: &str, want: f64) -> Result<()> {
        let last = std::cell::Cell::new(None);
        let waited = eventually_msg(&format!("{query} == {want}"), METRIC_TIMEOUT, || {
            let q = self.value(query);
            let last = &last;
            async move {
                let v = q.await?;
                last.set(v);
                anyhow::Ok(v == Some(want))
            }
        })
        .await;
        waited.with_context(|| format!("last value: {:?}", last.get()))
    }

    /// Waits until `query` returns at least `min`.
    async fn expect_at_least(&self, query: &str, min: f64) -> Result<()> {
        eventually_msg(&format!("{query} >= {min}"), METRIC_TIMEOUT, || async {
            anyhow::Ok(self.value(query).await?.is_some_and(|v| v >= min))
        })
        .await
    }

    /// Every metric name Prometheus has scraped.
    async fn names(&self) -> Result<BTreeSet<String>> {
        self.list("/api/v1/label/__name__/values").await
    }

    /// Every label name Prometheus has scraped.
    async fn labels(&self) -> Result<BTreeSet<String>> {
        self.list("/api/v1/labels").await
    }

    async fn list(&self, path: &str) -> Result<BTreeSet<String>> {
        let body: Value = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["data"]
            .as_array()
            .context("a list of names")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `prometheus` or `promtool`: on PATH (the Debian package), or
/// `PROMETHEUS_BIN_DIR`.
fn prometheus_bin(name: &str) -> Result<PathBuf> {
    let dirs = std::env::var_os("PROMETHEUS_BIN_DIR")
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("{name} not found: run scripts/install-prometheus.sh")
}

/// `s` percent-encoded for a URL query.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn host_port(base_url: &str) -> String {
    base_url.trim_start_matches("http://").to_owned()
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[tokio::test]
async fn prometheus_scrapes_the_counts_of_known_traffic() -> Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    let gateways = futures::future::try_join_all(
        ["gw-a", "gw-b"].map(|id| Gateway::builder(&url).instance_id(id).start()),
    )
    .await?;
    let lease = ["--ack-wait-secs", "2"];
    let mut workers = futures::future::try_join_all(
        ["wk-1", "wk-2"].map(|id| Worker::builder(&url).instance_id(id).args(lease).start()),
    )
    .await?;
    let mut targets: Vec<(&str, String)> = gateways
        .iter()
        .map(|g| ("jetway-gateway", host_port(g.base_url())))
        .collect();
    targets.extend(
        workers
            .iter()
            .map(|w| ("jetway-worker", host_port(w.base_url()))),
    );
    let prom = Prometheus::start(&targets).await?;
    prom.expect(r#"count(up == 1)"#, 4.0).await?;
    prom.expect("sum(jetway_nats_connected)", 4.0).await?;
    prom.expect("sum(jetway_worker_slots_busy)", 0.0).await?;

    // 3 tool calls on gw-a, 2 on gw-b, each in its own session.
    let (a, b) = (gateways[0].mcp_url(), gateways[1].mcp_url());
    let mut calls = 0;
    for (i, gw) in [&a, &a, &a, &b, &b].into_iter().enumerate() {
        let client = McpClient::initialize(gw).await?;
        let ex = client
            .call_tool(gw, "echo", json!({"text": format!("hello {i}")}))
            .await?;
        ensure!(ex.result().is_ok(), "echo {i}: {:?}", ex.error());
        calls += 1;
    }
    let calls = f64::from(calls);
    prom.expect(
        r#"sum(jetway_gateway_requests_total{mcp_method_name="tools/call"})"#,
        calls,
    )
    .await?;
    prom.expect(
        r#"sum(jetway_gateway_requests_total{mcp_method_name="initialize"})"#,
        calls,
    )
    .await?;
    prom.expect(
        r#"sum(mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",rpc_error_code=""})"#,
        calls,
    )
    .await?;
    prom.expect(
        r#"sum(jetway_worker_execution_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="echo",outcome="answered"})"#,
        calls,
    )
    .await?;
    prom.expect("sum(jetway_gateway_sessions_created_total)", calls)
        .await?;

    // An error class: a tool call in a session that was deleted is 404, -32002.
    let gone = McpClient::initialize(&a).await?;
    ensure!(gone.delete(&a).await? == StatusCode::OK);
    let after_delete = gone.call_tool(&a, "echo", json!({"text": "x"})).await?;
    ensure!(
        after_delete.status == StatusCode::NOT_FOUND,
        "{after_delete:?}"
    );
    prom.expect(
        r#"sum(jetway_gateway_http_requests_total{http_request_method="POST",http_status_class="4xx",rpc_error_code="-32002"})"#,
        1.0,
    )
    .await?;
    prom.expect("sum(jetway_gateway_sessions_closed_total)", 1.0)
        .await?;

    // A resume: GET with Last-Event-ID (the priming event) replays the response.
    let resumer = McpClient::initialize(&a).await?;
    let ex = resumer
        .call_tool(&a, "echo", json!({"text": "again"}))
        .await?;
    let priming = ex.event_ids().first().map(|s| s.to_string());
    let priming = priming.context("a priming event id")?;
    let mut resumed = resumer.get_stream(&b, Some(&priming)).await?;
    ensure!(
        resumed.status == StatusCode::OK,
        "resume: {}",
        resumed.status
    );
    let mut replayed = 0;
    while let Some(ev) = resumed.next_event(EVENT_TIMEOUT).await? {
        replayed += usize::from(ev.json.is_some());
    }
    ensure!(replayed == 1, "replayed {replayed} messages");
    prom.expect("sum(jetway_gateway_resumes_total)", 1.0)
        .await?;
    // Its time to the first replayed event is in the resume histogram.
    prom.expect(
        "sum(jetway_gateway_resume_first_event_duration_seconds_count)",
        1.0,
    )
    .await?;
    prom.expect(
        r#"sum(jetway_gateway_stream_reads_total{reason="replay"})"#,
        1.0,
    )
    .await?;

    // A re-run: the worker running analyze_data is SIGKILLed; the other
    // takes the redelivery over and finishes it.
    let client = McpClient::initialize(&a).await?;
    let mut call = client
        .send(
            &a,
            "tools/call",
            json!({"name": "analyze_data", "arguments": {"num_items": 8}, "_meta": {"progressToken": "t"}}),
        )
        .await?;
    ensure!(call.status == StatusCode::OK);
    let running_on = first_worker(&mut call, 8).await?;
    let victim = workers
        .iter()
        .position(|w| w.instance_id() == running_on)
        .context("a known worker")?;
    prom.expect("sum(jetway_worker_slots_busy)", 1.0).await?;
    workers[victim].kill().await?;
    let finished = Instant::now() + Duration::from_secs(45);
    while call
        .next_event(finished.saturating_duration_since(Instant::now()))
        .await?
        .is_some()
    {}
    let answer = call.final_response().context("a final response")?;
    ensure!(answer.get("result").is_some(), "{answer}");
    prom.expect("sum(jetway_worker_reruns_total)", 1.0).await?;
    prom.expect_at_least("sum(jetway_worker_redeliveries_total)", 1.0)
        .await?;
    prom.expect(
        r#"sum(jetway_worker_execution_duration_seconds_count{gen_ai_tool_name="analyze_data",outcome="answered"})"#,
        1.0,
    )
    .await?;
    prom.expect(
        r#"sum(jetway_gateway_requests_total{mcp_method_name="tools/call"})"#,
        calls + 2.0, // the resumed echo and analyze_data; the 404 was never published
    )
    .await?;
    // The consumer lag as the survivor reads it: nothing left waiting.
    prom.expect("sum(jetway_worker_consumer_pending)", 0.0)
        .await?;
    prom.expect_at_least(
        "sum(jetway_gateway_first_event_duration_seconds_count)",
        calls,
    )
    .await?;

    // What the dashboard and the alerts query exists in this scrape.
    let names = prom.names().await?;
    let labels = prom.labels().await?;
    let dashboard = std::fs::read_to_string(repo_file("deploy/grafana/jetway.json"))?;
    serde_json::from_str::<Value>(&dashboard).context("the dashboard is JSON")?;
    let rules = std::fs::read_to_string(repo_file("deploy/k8s/base/prometheusrule.yaml"))?;
    let queried: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&rules))
        .filter(|n| !labels.contains(n))
        .collect();
    ensure!(queried.len() >= 10, "too few metrics found: {queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|n| !names.contains(*n)).collect();
    ensure!(
        missing.is_empty(),
        "queried but never scraped: {missing:?}; scraped: {names:?}"
    );
    Ok(())
}

/// `promtool check rules` accepts the alert rules (the PrometheusRule's
/// `spec`, which is a rules file).
#[tokio::test]
async fn alert_rules_pass_promtool() -> Result<()> {
    let crd = std::fs::read_to_string(repo_file("deploy/k8s/base/prometheusrule.yaml"))?;
    let spec = crd
        .split_once("\nspec:\n")
        .context("a spec")?
        .1
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, spec)?;
    let out = tokio::process::Command::new(prometheus_bin("promtool")?)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The Jetway metric names in `text` (`jetway_…`, `mcp_…`), as scraped:
/// a histogram's `_bucket`/`_count`/`_sum` series are names of their own.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let starts = (rest.starts_with(b"jetway_") || rest.starts_with(b"mcp_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            // Both ends are ASCII, so char boundaries.
            let end = rest
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .map_or(bytes.len(), |e| i + e);
            out.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Reads until analyze_data's first log, which names the worker running it.
async fn first_worker(call: &mut ResponseStream, items: u64) -> Result<String> {
    let prefix = format!("Starting analysis of {items} items on ");
    loop {
        let ev = call
            .next_event(EVENT_TIMEOUT)
            .await?
            .context("the stream ended before the first log")?;
        let msg = ev
            .json
            .as_ref()
            .filter(|j| j["method"] == "notifications/message")
            .and_then(|j| j["params"]["data"]["msg"].as_str().map(str::to_owned));
        if let Some(rest) = msg.as_deref().and_then(|m| m.strip_prefix(&prefix)) {
            return Ok(rest.to_owned());
        }
    }
}

/// Bridge mode: the worker times each request to its upstream, by outcome
/// (read from the worker's own `/metrics`).
#[tokio::test]
async fn a_bridge_worker_counts_its_upstream_requests() -> Result<()> {
    let upstream = jetway_tests::upstream::Upstream::stateful(&["--stateless"]).await?;
    let nats = NatsServer::start().await?;
    let gateway = Gateway::builder(&nats.url()).start().await?;
    let upstream_url = upstream.url();
    let worker = Worker::builder(&nats.url())
        .args(["--upstream-url", upstream_url.as_str()])
        .start()
        .await?;
    let client = McpClient::initialize(&gateway.mcp_url()).await?;
    client
        .call_tool_structured(&gateway.mcp_url(), "whoami", json!({}))
        .await?;
    let (ok, scrape) = scraped(
        worker.base_url(),
        "jetway_bridge_upstream_request_duration_seconds_count{outcome=\"ok\"}",
    )
    .await?;
    // initialize and tools/call at least (the client's notification too).
    ensure!(ok.is_some_and(|n| n >= 2.0), "{scrape}");
    Ok(())
}

/// The value of the sample `series` (name and labels, exactly) in the
/// `/metrics` of the process at `base_url`, and the whole scrape.
async fn scraped(base_url: &str, series: &str) -> Result<(Option<f64>, String)> {
    let scrape = jetway_tests::scrape::scrape(base_url).await?;
    Ok((jetway_tests::scrape::sample(&scrape, series), scrape))
}

#[tokio::test]
async fn a_stdio_bridge_worker_times_its_process_requests() -> Result<()> {
    let nats = NatsServer::start().await?;
    let gateway = Gateway::builder(&nats.url()).start().await?;
    let cmd = jetway_tests::upstream::everything_stdio_command()?;
    let worker = Worker::builder(&nats.url())
        .args(["--upstream-cmd", cmd.as_str(), "--upstream-processes", "1"])
        .start()
        .await?;
    let client = McpClient::initialize(&gateway.mcp_url()).await?;
    for _ in 0..3 {
        client
            .call_tool(&gateway.mcp_url(), "echo", json!({"message": "hi"}))
            .await?
            .result()?;
    }
    let series = "jetway_bridge_stdio_request_duration_seconds_count{mode=\"pool\",outcome=\"ok\"}";
    let (ok, scrape) = scraped(worker.base_url(), series).await?;
    // The three calls (initialize is answered from the process's own
    // handshake, not a request).
    ensure!(ok == Some(3.0), "{series}: {ok:?}\n{scrape}");
    Ok(())
}

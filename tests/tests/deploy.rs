//! The deployment files (Dockerfile, docker-compose.yaml, nats.conf,
//! deploy/) are valid, and run exactly the binaries, flags and settings the
//! project has.
//!
//! 1. `scripts/validate-deploy.sh` passes: the kustomizations rendered by
//!    `kubectl kustomize`, Kubernetes and Compose schemas, `nats-server -t`,
//!    consistency checks (see the script). It also writes `workloads.json`:
//!    every place a Jetway binary runs, with its arguments, `JETWAY_*`
//!    environment (the image's `ENV` included) and TOML files. Broken
//!    overlays (one kustomize refuses, one that renders but does not fit
//!    together) fail it. Where there is no kubectl, the Kubernetes part is
//!    skipped and says `SKIPPED`, and everything else is still checked.
//! 2. Every flag there is one the binary's `--help` lists, and every setting
//!    (flag, variable, TOML key) is one the binary accepts: the binary itself
//!    loads each workload's configuration. A renamed flag or key fails here.
//! 3. Every binary the deployment files run is one the workspace builds, and
//!    the KEDA scaler names the workers' real stream and consumer.
//!
//! No Docker engine or cluster is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use jetway_shared::service::Service;
use jetway_tests::process::target_dir;
use jetway_tests::{jetway_bin, workspace_root};
use serde::Deserialize;

/// The binaries Jetway deploys.
const BINARIES: &[&str] = &["jetway-gateway", "jetway-worker"];

/// A TOML key no binary has: loading a file with it fails right after the
/// configuration is read (exit 2, every problem listed), before anything
/// binds a port or connects to NATS.
const SENTINEL: &str = "jetway_deploy_test_sentinel";

/// How long a binary may take to reject its configuration.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct Facts {
    workloads: Vec<Workload>,
    dockerfile: Vec<Stage>,
    keda: Vec<Keda>,
    /// The kubectl and kustomize versions that rendered deploy/k8s; `None`
    /// where there is no kubectl (and so no Kubernetes workloads).
    kustomize: Option<String>,
}

/// One place a Jetway binary runs (a compose service, a Kubernetes container).
#[derive(Debug, Clone, Deserialize)]
struct Workload {
    source: String,
    binary: String,
    args: Vec<String>,
    /// `JETWAY_*` variables with literal values (image `ENV`, compose
    /// `environment`, Kubernetes `env` and `envFrom` ConfigMaps).
    env: BTreeMap<String, String>,
    /// `JETWAY_*` variables whose value comes from elsewhere (`valueFrom`).
    env_refs: Vec<String>,
    /// TOML files mounted into the container, by path.
    config_files: BTreeMap<String, String>,
}

/// A runtime stage of the Dockerfile.
#[derive(Debug, Deserialize)]
struct Stage {
    stage: String,
    binary: String,
    env: BTreeMap<String, String>,
}

/// A KEDA nats-jetstream trigger.
#[derive(Debug, Deserialize)]
struct Keda {
    source: String,
    stream: Option<String>,
    consumer: Option<String>,
    account: Option<String>,
}

/// Runs `scripts/validate-deploy.sh` once per test process; its output
/// directory and printed report, or why it failed.
fn validated() -> Result<&'static (PathBuf, String)> {
    static RUN: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    RUN.get_or_init(|| run_validation().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn run_validation() -> Result<(PathBuf, String)> {
    let out = target_dir().join("deploy-validate");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let (ok, report) = run_script(&out, &[], &[])?;
    ensure!(ok, "scripts/validate-deploy.sh failed:\n{report}");
    Ok((out, report))
}

/// Runs `scripts/validate-deploy.sh` with `args` and `env` into `out`:
/// whether it passed, and its report.
fn run_script(out: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Result<(bool, String)> {
    let root = workspace_root();
    let res = Command::new("bash")
        .arg(root.join("scripts/validate-deploy.sh"))
        .args(args)
        .current_dir(&root)
        .env("DEPLOY_OUT", out)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .context("running scripts/validate-deploy.sh")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    Ok((res.status.success(), report))
}

/// The message the script prints where there is no kubectl.
fn kubectl_skipped() {
    println!(
        "SKIPPED: kubectl not found; kustomize rendering not checked \
         (no Kubernetes workloads to check here)"
    );
}

fn facts() -> Result<Facts> {
    let (out, _) = validated()?;
    let path = out.join("workloads.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The long flags a binary's `--help` lists (`--nats-url`, ...).
fn help_flags(bin: &Path) -> Result<BTreeSet<String>> {
    let out = Command::new(bin)
        .arg("--help")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --help", bin.display()))?;
    ensure!(
        out.status.success(),
        "{} --help failed: {}",
        bin.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Option lines look like `  -h, --help  Print help` or
    // `      --nats-url <URL>  NATS server URL(s)...`: the flag is among the
    // first two words (never in the description).
    let flags: BTreeSet<String> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| l.split_whitespace().take(2))
        .map(|w| w.trim_end_matches(','))
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', '[', '<']).next().unwrap_or(w).to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    ensure!(
        flags.contains("nats-url") && flags.contains("config"),
        "{} --help lists no --nats-url/--config; cannot parse:\n{text}",
        bin.display()
    );
    Ok(flags)
}

/// Settings a binary takes as flags, named as in TOML (`nats_url`).
fn flag_keys(flags: &BTreeSet<String>) -> BTreeSet<String> {
    flags
        .iter()
        .filter(|f| !["help", "version", "config"].contains(&f.as_str()))
        .map(|f| f.replace('-', "_"))
        .collect()
}

/// Top-level keys of a flat TOML file (before the first table header).
fn toml_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .collect()
}

/// The setting a `JETWAY_*` variable sets (`JETWAY_NATS_URL` -> `nats_url`);
/// `None` for `JETWAY_CONFIG`, which names the file.
fn env_key(var: &str) -> Option<String> {
    let key = var.strip_prefix("JETWAY_")?.to_ascii_lowercase();
    (key != "config").then_some(key)
}

/// The config file a workload passes (`--config X`, `--config=X` or
/// `JETWAY_CONFIG`).
fn config_path(w: &Workload) -> Option<String> {
    let mut args = w.args.iter();
    while let Some(a) = args.next() {
        if a == "--config" {
            return args.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_owned());
        }
    }
    w.env.get("JETWAY_CONFIG").cloned()
}

/// Loads the workload's configuration with the real binary, exactly as
/// deployed (its arguments, its environment and nothing else, its config
/// file), plus the sentinel key and a line for every variable's key, so
/// that the binary lists every problem and exits. The only problem allowed
/// is the sentinel: an unknown flag (clap), an unknown key, a wrong type
/// or an invalid value all show up here.
fn probe(bin: &Path, w: &Workload, dir: &Path, n: usize) -> Result<()> {
    let file = config_path(w);
    let content = match &file {
        Some(path) => w.config_files.get(path).cloned().ok_or_else(|| {
            anyhow!(
                "{}: config file {path} is not mounted by the deployment (mounted: {:?})",
                w.source,
                w.config_files.keys().collect::<Vec<_>>()
            )
        })?,
        None => String::new(),
    };
    let in_file = toml_keys(&content);
    // Unknown JETWAY_* variables are ignored by the binaries (platforms set
    // their own), so each variable's key goes into the file too, where an
    // unknown key is an error. The environment overrides the file, so the
    // placeholder value never reaches a setting.
    let mut toml = format!("{SENTINEL} = true\n");
    for var in w.env.keys().chain(&w.env_refs) {
        if let Some(key) = env_key(var).filter(|k| !in_file.contains(k)) {
            toml.push_str(&format!("{key} = \"probe\"\n"));
        }
    }
    toml.push('\n');
    toml.push_str(&content);
    let path = dir.join(format!("{}-{n}.toml", w.binary));
    std::fs::write(&path, &toml)?;
    let path_str = path.to_string_lossy().into_owned();

    let mut args = Vec::new();
    let mut it = w.args.iter();
    let mut replaced = false;
    while let Some(a) = it.next() {
        if a == "--config" {
            it.next();
            args.extend(["--config".to_owned(), path_str.clone()]);
            replaced = true;
        } else if a.starts_with("--config=") {
            args.push(format!("--config={path_str}"));
            replaced = true;
        } else {
            args.push(a.clone());
        }
    }
    let mut env = w.env.clone();
    if env.contains_key("JETWAY_CONFIG") {
        env.insert("JETWAY_CONFIG".into(), path_str.clone());
    } else if !replaced {
        args.extend(["--config".to_owned(), path_str.clone()]);
    }

    let mut child = Command::new(bin)
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!(
                "{}: {} did not reject the sentinel key within {PROBE_TIMEOUT:?}",
                w.source,
                w.binary
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    let sentinel_only =
        problems.len() == 1 && problems[0].starts_with(&format!("{SENTINEL}: unknown setting"));
    ensure!(
        out.status.code() == Some(2) && sentinel_only,
        "{}: {} rejects this configuration ({}).\n  args: {:?}\n  env: {:?}\n  file:\n{}\n  stderr:\n{}",
        w.source,
        w.binary,
        out.status,
        w.args,
        w.env,
        content,
        stderr
    );
    Ok(())
}

#[test]
fn validate_deploy_script_passes() -> Result<()> {
    let (out, report) = validated()?;
    println!("{report}");
    println!("renders and workloads.json in {}", out.display());
    match facts()?.kustomize {
        Some(version) => ensure!(
            report.contains(&format!("== deploy/k8s/base ({version};")),
            "the report does not show deploy/k8s/base rendered by {version}"
        ),
        None => kubectl_skipped(),
    }
    Ok(())
}

/// Copies deploy/k8s/base into `dir`/base, for overlays next to it.
fn copy_base(dir: &Path) -> Result<()> {
    let base = workspace_root().join("deploy/k8s/base");
    std::fs::create_dir_all(dir.join("base"))?;
    for entry in std::fs::read_dir(&base)? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join("base").join(name))?;
        }
    }
    Ok(())
}

/// An overlay of the base, in `dir`/`name`, with these `patches:` entries.
fn overlay(dir: &Path, name: &str, patches: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::create_dir_all(&path)?;
    std::fs::write(
        path.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - ../base\npatches:\n{patches}"
        ),
    )?;
    Ok(path)
}

/// Patches kustomize refuses: this one matches nothing.
const UNRENDERABLE: &str = r#"  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: jetway-nonexistent
      spec:
        replicas: 2
"#;

/// Patches kustomize applies, but the result does not fit: the gateway is
/// ready when merely alive, the worker is killed before its drain ends, and
/// a field Kubernetes does not have.
const UNFIT: &str = r#"  - target: {kind: Deployment, name: jetway-gateway}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/readinessProbe/httpGet/path
        value: /healthz
      - op: add
        path: /spec/bogusField
        value: 1
  - target: {kind: Deployment, name: jetway-worker}
    patch: |-
      - op: replace
        path: /spec/template/spec/terminationGracePeriodSeconds
        value: 10
"#;

#[test]
fn broken_overlays_are_refused() -> Result<()> {
    // After the main run: it installs the tools once.
    if facts()?.kustomize.is_none() {
        kubectl_skipped();
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(tmp.path())?;
    copy_base(&dir)?;
    let unrenderable = overlay(&dir, "unrenderable", UNRENDERABLE)?;
    let unfit = overlay(&dir, "unfit", UNFIT)?;
    let base = dir.join("base");
    let mut args: Vec<&OsStr> = Vec::new();
    for d in [&base, &unrenderable, &unfit] {
        args.extend([OsStr::new("--kustomization"), d.as_os_str()]);
    }
    let (ok, report) = run_script(&dir.join("out"), &args, &[])?;
    println!("{report}");
    ensure!(
        !ok,
        "validate-deploy.sh accepted broken overlays:\n{report}"
    );
    let failed: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("  failed:  "))
        .collect();
    let failed_in = |d: &Path, needle: &str| {
        let prefix = format!("{}: ", d.display());
        failed
            .iter()
            .any(|f| f.starts_with(&prefix) && f.contains(needle))
    };
    ensure!(
        report.contains(&format!("== {} (", base.display()))
            && !failed
                .iter()
                .any(|f| f.starts_with(&format!("{}: ", base.display()))),
        "the unchanged base (the control) was not checked, or failed:\n{report}"
    );
    for (d, needle) in [
        (&unrenderable, "cannot render: `kubectl kustomize"),
        (&unrenderable, "jetway-nonexistent"),
        (
            &unfit,
            "jetway-gateway container gateway: readiness /readyz, liveness /healthz",
        ),
        (
            &unfit,
            "jetway-worker container worker: terminationGracePeriodSeconds 10 >=",
        ),
        (
            &unfit,
            "Deployment/jetway-gateway (ns jetway) valid for Kubernetes",
        ),
    ] {
        ensure!(
            failed_in(d, needle),
            "no failure in {} about {needle:?}:\n{report}",
            d.display()
        );
    }
    ensure!(
        failed.len() == 4,
        "other failures than the 4 expected:\n{report}"
    );
    Ok(())
}

#[test]
fn without_kubectl_the_rest_is_still_checked() -> Result<()> {
    validated()?; // After the main run: it installs the tools once.
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("no-kubectl-here");
    let out = tmp.path().join("out");
    let (ok, report) = run_script(&out, &[], &[("KUBECTL", missing.as_os_str())])?;
    println!("{report}");
    ensure!(ok, "validate-deploy.sh failed without kubectl:\n{report}");
    ensure!(
        report.contains(&format!(
            "SKIPPED: {} not found; kustomize rendering not checked",
            missing.display()
        )),
        "the report does not say the Kubernetes checks were skipped:\n{report}"
    );
    for section in [
        "== Dockerfile",
        "== docker-compose.yaml",
        "== nats-server configurations",
    ] {
        ensure!(
            report.contains(section),
            "{section} not checked without kubectl:\n{report}"
        );
    }
    let text = std::fs::read_to_string(out.join("workloads.json"))?;
    let facts: Facts = serde_json::from_str(&text)?;
    ensure!(
        facts.kustomize.is_none()
            && !facts.workloads.is_empty()
            && facts
                .workloads
                .iter()
                .all(|w| !w.source.starts_with("deploy/k8s/")),
        "workloads.json without kubectl: {text}"
    );
    Ok(())
}

#[test]
fn deployed_flags_and_settings_exist_in_the_binaries() -> Result<()> {
    let facts = facts()?;
    // Not vacuous: compose runs two of each, every kustomization one of each.
    for binary in BINARIES {
        let count = |prefix: &str| {
            facts
                .workloads
                .iter()
                .filter(|w| w.binary == *binary && w.source.starts_with(prefix))
                .count()
        };
        ensure!(
            count("docker-compose.yaml") == 2,
            "compose runs {binary} twice"
        );
        if facts.kustomize.is_some() {
            ensure!(
                count("deploy/k8s/") >= 3,
                "every kustomization runs {binary}"
            );
        }
    }
    match facts.kustomize {
        Some(_) => ensure!(
            facts
                .workloads
                .iter()
                .any(|w| w.source.starts_with("deploy/k8s/") && !w.config_files.is_empty()),
            "the Kubernetes workloads mount no TOML config: nothing checked there"
        ),
        None => kubectl_skipped(),
    }

    let mut workloads = facts.workloads.clone();
    // The images' own ENV (e.g. JETWAY_LISTEN), as a workload of its own.
    for st in &facts.dockerfile {
        workloads.push(Workload {
            source: format!("Dockerfile stage {}", st.stage),
            binary: st.binary.clone(),
            args: Vec::new(),
            env: st.env.clone(),
            env_refs: Vec::new(),
            config_files: BTreeMap::new(),
        });
    }

    let dir = tempfile::tempdir()?;
    let mut helps = BTreeMap::new();
    let mut failures = Vec::new();
    let mut confirmed_by_binary = BTreeSet::new();
    for (n, w) in workloads.iter().enumerate() {
        let bin =
            jetway_bin(&w.binary).with_context(|| format!("{} runs {}", w.source, w.binary))?;
        if !helps.contains_key(&w.binary) {
            helps.insert(w.binary.clone(), help_flags(&bin)?);
        }
        let flags = &helps[&w.binary];

        // Flags: exactly those --help lists.
        for arg in w.args.iter().filter(|a| a.starts_with("--")) {
            let name = arg[2..].split('=').next().unwrap_or_default();
            if !flags.contains(name) {
                failures.push(format!(
                    "{}: flag --{name} is not in `{} --help` (flags: {flags:?})",
                    w.source, w.binary
                ));
            }
        }
        // Settings: flag names, or keys the binary itself accepts (bus
        // settings have no flag), which the probe below confirms.
        let keys = flag_keys(flags);
        let used: BTreeSet<String> = w
            .env
            .keys()
            .chain(&w.env_refs)
            .filter_map(|v| env_key(v))
            .chain(w.config_files.values().flat_map(|t| toml_keys(t)))
            .collect();
        match probe(&bin, w, dir.path(), n) {
            Ok(()) => confirmed_by_binary
                .extend(used.difference(&keys).map(|k| format!("{}: {k}", w.binary))),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    println!(
        "checked {} workloads; settings without a flag, accepted by the binaries: {confirmed_by_binary:?}",
        workloads.len()
    );
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[test]
fn deployments_run_binaries_the_workspace_builds() -> Result<()> {
    let facts = facts()?;
    let mut used = BTreeSet::new();
    for (source, binary) in facts
        .workloads
        .iter()
        .map(|w| (w.source.clone(), &w.binary))
        .chain(
            facts
                .dockerfile
                .iter()
                .map(|s| (format!("Dockerfile stage {}", s.stage), &s.binary)),
        )
    {
        jetway_bin(binary).with_context(|| format!("{source} runs {binary}"))?;
        used.insert(binary.as_str());
    }
    let all: BTreeSet<&str> = BINARIES.iter().copied().collect();
    ensure!(used == all, "deployed binaries {used:?}, expected {all:?}");

    // The workers' durable consumer and its stream, from the source.
    let root = workspace_root();
    let worker_config = std::fs::read_to_string(root.join("worker/src/config.rs"))?;
    let consumer = worker_config
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const CONSUMER: &str = "))
        .map(|v| v.trim_end_matches(';').trim_matches('"').to_owned())
        .context("worker/src/config.rs: no `pub const CONSUMER: &str` (update this test)")?;
    // The deployments run the default service; its first partition's stream.
    let stream = Service::default().stream_name(0);
    match facts.kustomize {
        Some(_) => ensure!(
            !facts.keda.is_empty(),
            "no KEDA nats-jetstream trigger found"
        ),
        None => kubectl_skipped(),
    }
    for k in &facts.keda {
        ensure!(
            k.stream.as_deref() == Some(stream.as_str())
                && k.consumer.as_deref() == Some(consumer.as_str())
                && k.account.as_deref() == Some("$G"),
            "{}: KEDA reads stream {:?} consumer {:?} account {:?}; the workers use {stream} / {consumer} / $G",
            k.source,
            k.stream,
            k.consumer,
            k.account
        );
    }
    Ok(())
}

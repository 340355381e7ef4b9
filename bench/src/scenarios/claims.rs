//! Scenario 7: what a request's claim costs.
//!
//! Before a request runs, its worker claims it: one compare-and-set create
//! in the KV bucket `jetway_claims`, key `<session>.<stream key>`, value
//! about 80 bytes of JSON naming the worker and its probe subject, headers
//! `Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence: 0` and
//! `Nats-TTL: 660` (the default deadline plus 60 s). Every request pays it,
//! read-only ones too.
//!
//! Against a nats-server like the other scenarios' (fresh, temp store,
//! random ports; no gateway or worker), with the buckets and the session
//! stream created by `jetway_shared::setup::ensure` as a worker creates
//! them, this scenario makes N sequential writes of each kind, one at a
//! time, each waiting for its acknowledgement:
//! - the claim, written exactly as the worker writes it
//!   (`jetway_shared::kv_write::write_expiring`, expected revision 0);
//! - the reference: a plain publish of the same payload to the same bucket's
//!   stream (`$KV.jetway_claims.<key>`), no headers;
//! - for scale: a request's own publish, as the gateway makes it — the same
//!   payload on the session stream's `in.rpc` subject with a `Nats-Msg-Id`
//!   (that stream republishes every message to its live subject).
//!
//! The kinds alternate in rounds so that noise on this shared machine falls
//! on all of them alike. Reported per write: latency percentiles (send →
//! acknowledgement), and the nats-server's CPU time (its threads' run time,
//! `/proc/<pid>/task/*/schedstat`, in ns: clock ticks are too coarse for
//! writes of tens of µs) over the writes of that kind divided by their
//! count; likewise the benchmark process's own (the client side).

use super::Ctx;
use crate::report::{Section, table};
use crate::stack::Nats;
use crate::stats::{Latency, fmt_ms, fmt_ratio, ratio};
use crate::usage::ThreadTimes;
use anyhow::{Context, Result, anyhow, bail};
use async_nats::HeaderMap;
use bytes::Bytes;
use jetway_shared::{
    config::Bus,
    kv_write::{self, Expect},
    publish::{publish_acked, publish_once},
    setup,
    subjects::{self, SessionId, StreamKey},
};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// The claim's TTL as the worker sets it with the default
/// `--deadline-secs 600` (deadline + 60 s).
const TTL: Duration = Duration::from_secs(660);
/// Writes of each kind before the measured ones (connection, stream caches).
const WARMUP: usize = 20;
/// Rounds of (claims, plain publishes, request publishes).
const ROUNDS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Claim,
    Plain,
    Request,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Claim, Kind::Plain, Kind::Request];

    fn name(self) -> &'static str {
        match self {
            Kind::Claim => "claim (as the worker writes it)",
            Kind::Plain => "plain publish, same payload, same bucket stream (reference)",
            Kind::Request => "a request's publish, as the gateway makes it",
        }
    }

    fn how(self) -> &'static str {
        match self {
            Kind::Claim => {
                "`$KV.jetway_claims.<key>`, Nats-Msg-Id, Nats-Expected-Last-Subject-Sequence: 0, \
                 Nats-TTL: 660"
            }
            Kind::Plain => "`$KV.jetway_claims.<key>`, no headers",
            Kind::Request => "`jetway.0.<sid>.in.rpc`, Nats-Msg-Id, republished",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    kind: &'static str,
    how: &'static str,
    writes: usize,
    payload_bytes: usize,
    latency: Latency,
    /// nats-server CPU time per write, µs.
    nats_cpu_us: f64,
    /// The benchmark process's CPU time per write, µs.
    client_cpu_us: f64,
}

#[derive(Default)]
struct Acc {
    latencies_us: Vec<u64>,
    nats_cpu_secs: f64,
    client_cpu_secs: f64,
}

/// What the writes need.
struct Writer {
    js: async_nats::jetstream::Context,
    claims: async_nats::jetstream::kv::Store,
    session: SessionId,
    nonce: String,
    payload: Bytes,
}

impl Writer {
    async fn write(&self, kind: Kind) -> Result<()> {
        let key = StreamKey::new_request();
        match kind {
            Kind::Claim => {
                let claim = subjects::claim_key(&self.session, &key);
                let id = jetway_shared::msg_id::claim_write(&self.session, &key, &self.nonce, 0);
                kv_write::write_expiring(
                    &self.js,
                    &self.claims,
                    &claim,
                    self.payload.clone(),
                    Expect::Revision(0),
                    &id,
                    Some(TTL),
                )
                .await
                .with_context(|| format!("claim {claim}"))?;
            }
            Kind::Plain => {
                let subject =
                    kv_write::subject_of(&self.claims, &subjects::claim_key(&self.session, &key));
                publish_once(&self.js, subject, HeaderMap::new(), self.payload.clone())
                    .await
                    .context("plain publish")?;
            }
            Kind::Request => {
                let mut h = HeaderMap::new();
                h.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    jetway_shared::msg_id::inbound(&self.session, key.as_str()).as_str(),
                );
                publish_acked(&self.js, self.session.in_rpc(), h, self.payload.clone())
                    .await
                    .context("request publish")?;
            }
        }
        Ok(())
    }
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let nats = Nats::start(&ctx.env, "claims-nats").await?;
    let result = measure(ctx, &nats).await;
    nats.stop().await;
    let rows = result?;

    let claim = &rows[0];
    let plain = &rows[1];
    let table_rows = rows
        .iter()
        .map(|r| {
            let l = &r.latency;
            vec![
                r.kind.to_owned(),
                r.how.to_owned(),
                r.writes.to_string(),
                r.payload_bytes.to_string(),
                fmt_ms(l.p50_ms),
                fmt_ms(l.p90_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.max_ms),
                format!("{:.0}", r.nats_cpu_us),
                format!("{:.0}", r.client_cpu_us),
            ]
        })
        .collect();
    let mut markdown = format!(
        "{} sequential writes of each kind against a fresh nats-server (buckets and stream \
         created by `jetway_shared::setup::ensure`, R1, file storage), one at a time, in {ROUNDS} \
         alternating rounds after {WARMUP} unmeasured writes of each. Latency in ms from sending \
         to the acknowledgement; CPU in µs per write (nats-server, and the benchmark process \
         as the client), from the threads' run time in `/proc/<pid>/task/*/schedstat`.\n\n",
        claim.writes
    );
    markdown.push_str(&table(
        &[
            "write",
            "subject, headers",
            "writes",
            "payload (B)",
            "p50",
            "p90",
            "p99",
            "max",
            "NATS CPU (µs/write)",
            "client CPU (µs/write)",
        ],
        table_rows,
    ));
    markdown.push_str(&format!(
        "\nClaim ÷ plain publish: p50 {}, p99 {}, NATS CPU {}. A claim costs {} µs of NATS CPU \
         and {} ms (p50) per request over a plain publish.\n",
        fmt_ratio(ratio(claim.latency.p50_ms, plain.latency.p50_ms)),
        fmt_ratio(ratio(claim.latency.p99_ms, plain.latency.p99_ms)),
        fmt_ratio(ratio(claim.nats_cpu_us, plain.nats_cpu_us)),
        format_args!("{:+.0}", claim.nats_cpu_us - plain.nats_cpu_us),
        format_args!("{:+.3}", claim.latency.p50_ms - plain.latency.p50_ms),
    ));
    Ok(Section {
        key: "claims",
        title: "7. Cost of a claim".into(),
        markdown,
        json: json!({ "writes": claim.writes, "rounds": ROUNDS, "rows": rows }),
        targets: Vec::new(),
    })
}

async fn measure(ctx: &Ctx, nats: &Nats) -> Result<Vec<Row>> {
    let bus = Bus {
        nats_url: nats.url.clone(),
        instance_id: "claims-bench".into(),
        ..Bus::default()
    };
    let client = setup::connect(&bus, "jetway-bench").await?;
    let js = setup::context(client, &bus);
    let resources = setup::ensure(&js, &bus, &Default::default()).await?;
    // The worker's claim value: its instance id and its probe subject.
    // A process nonce: 16 hex digits, as the worker's.
    let nonce = "5eedc1a1b2c3d4e5".to_owned();
    let payload: Bytes = serde_json::to_vec(&json!({
        "instance": "jetway-worker-7d9f8b6c5-x2k4q",
        "probe": subjects::probe(&Default::default(), &nonce),
    }))?
    .into();
    let writer = Writer {
        js,
        claims: resources.claims,
        session: SessionId::generate(&Default::default(), 0),
        nonce,
        payload,
    };
    for kind in Kind::ALL {
        for _ in 0..WARMUP {
            writer.write(kind).await?;
        }
    }

    let n = ctx.params.claims_writes;
    let mut acc: [Acc; 3] = Default::default();
    let (own, nats_pid) = (std::process::id(), nats.pid());
    for round in 0..ROUNDS {
        // n split over the rounds, the remainder one each to the first ones.
        let per_round = n / ROUNDS + usize::from(round < n % ROUNDS);
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            let (nats0, own0) = (ThreadTimes::of(nats_pid)?, ThreadTimes::of(own)?);
            for _ in 0..per_round {
                let t = Instant::now();
                writer.write(kind).await?;
                acc[i].latencies_us.push(t.elapsed().as_micros() as u64);
            }
            let (nats1, own1) = (ThreadTimes::of(nats_pid)?, ThreadTimes::of(own)?);
            acc[i].nats_cpu_secs += nats0.secs_until(&nats1);
            acc[i].client_cpu_secs += own0.secs_until(&own1);
        }
    }
    check_stored(&writer, n + WARMUP).await?;

    Ok(Kind::ALL
        .into_iter()
        .zip(acc)
        .map(|(kind, a)| {
            let writes = a.latencies_us.len();
            Row {
                kind: kind.name(),
                how: kind.how(),
                writes,
                payload_bytes: writer.payload.len(),
                latency: Latency::from_micros(a.latencies_us),
                nats_cpu_us: a.nats_cpu_secs * 1e6 / writes as f64,
                client_cpu_us: a.client_cpu_secs * 1e6 / writes as f64,
            }
        })
        .collect())
}

/// The claims are in the bucket with their TTL (a claim the server did not
/// take as a TTL'd create would not be what the worker pays for).
async fn check_stored(writer: &Writer, per_kind: usize) -> Result<()> {
    let mut stream = writer.claims.stream.clone();
    let info = stream.info().await.context("claims stream info")?;
    if !info.config.allow_message_ttl {
        bail!("the claims bucket does not allow per-message TTLs");
    }
    // Claims and plain publishes both land in the claims stream.
    let want = 2 * per_kind as u64;
    if info.state.messages != want {
        bail!(
            "the claims stream holds {} messages, expected {want}",
            info.state.messages
        );
    }
    let first = writer
        .claims
        .stream
        .direct_get(info.state.first_sequence)
        .await
        .map_err(|e| anyhow!("reading the first claim: {e}"))?;
    let ttl = first
        .headers
        .get(async_nats::header::NATS_MESSAGE_TTL)
        .map(|v| v.as_str().to_owned());
    if ttl.as_deref() != Some("660") {
        bail!("the first claim's Nats-TTL is {ttl:?}, expected 660");
    }
    Ok(())
}

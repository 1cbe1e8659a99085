//! The demo's two sample services: a batch output a few hours behind and a
//! streaming output that is fresh but fails, stalls and repeats a record
//! now and then, as real ones do, each on 127.0.0.1:0.

use bytes::Bytes;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::serve::StartError;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The header both sample services put their watermark in.
pub(super) const WATERMARK: &str = "x-data-watermark";
/// How far the sample batch output lags: its watermark is the start of the
/// current hour minus this, like a job that runs hourly on a 3-hour-old cut.
pub(super) const BATCH_LAG: Duration = Duration::from_secs(3 * 3600);
/// Share of streaming reads answered 503, so fallbacks show up in a few curls.
pub(super) const STREAMING_FAILURES: f64 = 0.05;
/// Share of streaming reads that stall past the demo's 300 ms streaming timeout.
pub(super) const STREAMING_STALLS: f64 = 0.03;
/// Share of streaming reads that carry one record twice, as an at-least-once
/// pipeline does after a retry: reconcile reports it as a `duplicate`.
pub(super) const STREAMING_DUPLICATES: f64 = 0.1;
pub(super) const STALL: Duration = Duration::from_millis(450);
/// Where the sample streaming service takes `POST ?failures=0.8&divergence=0.5`.
pub(super) const MISBEHAVE_PATH: &str = "/misbehave";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Batch,
    Streaming,
}

/// The records both sample services serve, fixed when the demo starts.
pub(super) struct Dataset {
    pub(super) batch_watermark: SystemTime,
    /// Orders up to the batch watermark: what both sides have.
    pub(super) settled: Vec<Record>,
    /// Orders after the batch watermark: only streaming has them yet.
    pub(super) recent: Vec<Record>,
    pub(super) customers: Vec<Record>,
}

/// One record as the services answer it. Typed rather than `json!` so the
/// fields come out in a natural order (`id` first) without `preserve_order`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum Record {
    Order {
        id: u64,
        customer_id: u64,
        amount: f64,
        currency: &'static str,
        status: &'static str,
        created_at: String,
        /// When this side loaded the record: differs between the sides by
        /// nature, so the demo config tells reconcile to ignore it.
        ingested_at: String,
    },
    Customer {
        id: u64,
        name: &'static str,
        country: &'static str,
        ingested_at: String,
    },
}

impl Record {
    pub(super) fn id(&self) -> u64 {
        match self {
            Record::Order { id, .. } | Record::Customer { id, .. } => *id,
        }
    }

    pub(super) fn ingested(mut self, at: SystemTime) -> Record {
        match &mut self {
            Record::Order { ingested_at, .. } | Record::Customer { ingested_at, .. } => {
                *ingested_at = rfc3339(at);
            }
        }
        self
    }
}

/// The body of every successful answer.
#[derive(Serialize)]
pub(super) struct Page {
    pub(super) data: Vec<Record>,
}

impl Dataset {
    pub(super) fn new(now: SystemTime) -> Dataset {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let batch_watermark = UNIX_EPOCH + Duration::from_secs(secs - secs % 3600) - BATCH_LAG;
        let order = |id, customer_id, amount, status, at| Record::Order {
            id,
            customer_id,
            amount,
            currency: "EUR",
            status,
            created_at: rfc3339(at),
            ingested_at: String::new(),
        };
        let before = |minutes: u64| batch_watermark - Duration::from_secs(minutes * 60);
        let ago = |minutes: u64| now - Duration::from_secs(minutes * 60);
        let settled = vec![
            order(1, 101, 12.5, "paid", before(95)),
            order(2, 102, 230.0, "paid", before(80)),
            order(3, 101, 7.99, "refunded", before(64)),
            order(4, 103, 48.2, "paid", before(41)),
            order(5, 104, 19.0, "shipped", before(17)),
            order(6, 102, 99.9, "paid", before(3)),
        ];
        let recent = vec![
            order(7, 105, 15.75, "paid", ago(150)),
            order(8, 103, 310.4, "paid", ago(42)),
            order(9, 101, 5.0, "pending", ago(2)),
        ];
        let customer = |id, name, country| Record::Customer {
            id,
            name,
            country,
            ingested_at: String::new(),
        };
        let customers = vec![
            customer(101, "Ada Bakery", "DE"),
            customer(102, "Brook Bikes", "NL"),
            customer(103, "Cedar Books", "FR"),
            customer(104, "Delta Dairy", "DE"),
            customer(105, "Echo Electric", "ES"),
        ];
        Dataset {
            batch_watermark,
            settled,
            recent,
            customers,
        }
    }

    /// The answer to a read of `path` on one side: `/…/orders`,
    /// `/…/orders/{id}`, `/…/customers`, `/…/customers/{id}`.
    pub(super) fn answer(&self, kind: Kind, path: &str, now: SystemTime) -> Response<Full<Bytes>> {
        self.answer_losing(kind, path, now, false)
    }

    /// As `answer`; with `lose`, a collection answer leaves out its first record.
    pub(super) fn answer_losing(
        &self,
        kind: Kind,
        path: &str,
        now: SystemTime,
        lose: bool,
    ) -> Response<Full<Bytes>> {
        let (collection, id) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((rest, last)) if last.parse::<u64>().is_ok() => (
                rest.rsplit('/').next().unwrap_or(""),
                last.parse::<u64>().ok(),
            ),
            Some((_, last)) => (last, None),
            None => ("", None),
        };
        let (watermark, ingested_at) = match kind {
            // The batch job loaded everything up to its watermark in one go.
            Kind::Batch => (
                self.batch_watermark,
                self.batch_watermark + Duration::from_secs(1200),
            ),
            // Streaming is a few seconds behind the present.
            Kind::Streaming => {
                let lag = Duration::from_millis(1500 + fastrand::u64(0..2500));
                (now - lag, now - lag)
            }
        };
        let records: Vec<&Record> = match (collection, kind) {
            ("orders", Kind::Batch) => self.settled.iter().collect(),
            ("orders", Kind::Streaming) => self.settled.iter().chain(&self.recent).collect(),
            ("customers", _) => self.customers.iter().collect(),
            _ => return plain(StatusCode::NOT_FOUND, "try /…/orders or /…/customers\n"),
        };
        let mut data: Vec<Record> = records
            .into_iter()
            .filter(|r| id.is_none_or(|id| r.id() == id))
            .map(|r| r.clone().ingested(ingested_at))
            .collect();
        if id.is_some() && data.is_empty() {
            return plain(StatusCode::NOT_FOUND, "no such record\n");
        }
        // The first record: one batch has too, so reconcile sees it `missing`.
        if lose && id.is_none() && !data.is_empty() {
            data.remove(0);
        }
        if kind == Kind::Streaming && fastrand::f64() < STREAMING_DUPLICATES {
            let redelivered = data[fastrand::usize(..data.len())].clone();
            data.push(redelivered);
        }
        let body = serde_json::to_vec(&Page { data }).unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&rfc3339(watermark)) {
            headers.insert(WATERMARK, v);
        }
        resp
    }
}

/// One sample service on 127.0.0.1:0, stopped (with its connections) when dropped.
pub(super) struct SampleService {
    pub(super) addr: SocketAddr,
    pub(super) dataset: Arc<Dataset>,
    pub(super) task: JoinHandle<()>,
}

impl Drop for SampleService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SampleService {
    pub(super) async fn start(
        kind: Kind,
        dataset: Arc<Dataset>,
    ) -> Result<SampleService, StartError> {
        let what = match kind {
            Kind::Batch => "sample batch service",
            Kind::Streaming => "sample streaming service",
        };
        let misbehaviour = Arc::new(Misbehaviour::default());
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let bound = TcpListener::bind(addr).await.and_then(|l| {
            let a = l.local_addr()?;
            Ok((l, a))
        });
        let (listener, addr) = bound.map_err(|source| StartError::Bind { what, addr, source })?;
        let data = dataset.clone();
        let task = tokio::spawn(async move {
            // Owned here so that aborting the accept loop aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let data = data.clone();
                let misbehaviour = misbehaviour.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let data = data.clone();
                    let misbehaviour = misbehaviour.clone();
                    async move {
                        Ok::<_, Infallible>(serve_read(kind, &data, &misbehaviour, &req).await)
                    }
                });
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(SampleService {
            addr,
            dataset,
            task,
        })
    }
}

/// How much worse than usual the sample streaming service behaves, as set
/// by `POST /misbehave` (f64 bits; 0 = as usual).
#[derive(Debug, Default)]
pub(super) struct Misbehaviour {
    /// Share of reads answered 503 (when above the usual `STREAMING_FAILURES`).
    pub(super) failures: AtomicU64,
    /// Share of answers that lose a record (reconcile: `missing`).
    pub(super) divergence: AtomicU64,
}

impl Misbehaviour {
    pub(super) fn failures(&self) -> f64 {
        f64::from_bits(self.failures.load(Ordering::Relaxed))
    }

    pub(super) fn divergence(&self) -> f64 {
        f64::from_bits(self.divergence.load(Ordering::Relaxed))
    }

    /// Applies `failures=0.8&divergence=0.5` (either, or both); what is not
    /// given stays as it was. `Err` names a bad parameter.
    pub(super) fn set(&self, query: &str) -> Result<String, String> {
        let mut changes = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let share = value
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| format!("{key}={value}: expected a share from 0 to 1"))?;
            let cell = match key {
                "failures" => &self.failures,
                "divergence" => &self.divergence,
                _ => return Err(format!("unknown parameter `{key}` (failures, divergence)")),
            };
            changes.push((cell, share));
        }
        for (cell, share) in changes {
            cell.store(share.to_bits(), Ordering::Relaxed);
        }
        Ok(format!(
            "streaming now fails {:.0}% of reads and loses a record in {:.0}% of answers\n",
            self.failures().max(STREAMING_FAILURES) * 100.0,
            self.divergence() * 100.0
        ))
    }
}

/// Answers one read the way that side would, streaming's failures included;
/// on the streaming service, `POST /misbehave` makes it worse (or better).
pub(super) async fn serve_read(
    kind: Kind,
    data: &Dataset,
    misbehaviour: &Misbehaviour,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if kind == Kind::Streaming && req.method() == Method::POST && req.uri().path() == MISBEHAVE_PATH
    {
        return match misbehaviour.set(req.uri().query().unwrap_or("")) {
            Ok(said) => text(StatusCode::OK, said),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
    }
    // Freshness probes (HEAD) see a healthy service, so the demo's failures
    // show up on reads, where the fallback handles them.
    if kind == Kind::Streaming && req.method() == Method::GET {
        let roll = fastrand::f64();
        let failures = misbehaviour.failures().max(STREAMING_FAILURES);
        if roll < failures {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "streaming: partition rebalancing, try again\n",
            );
        }
        if roll < failures + STREAMING_STALLS {
            tokio::time::sleep(STALL).await;
        }
        let lose = fastrand::f64() < misbehaviour.divergence();
        return data.answer_losing(kind, req.uri().path(), SystemTime::now(), lose);
    }
    data.answer(kind, req.uri().path(), SystemTime::now())
}

pub(super) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = plain(status, "");
    *r.body_mut() = Full::new(Bytes::from(body));
    r
}

pub(super) fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// RFC 3339 in UTC to the second, the form watermark headers usually take.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

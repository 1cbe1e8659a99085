//! A thin client for the Prometheus HTTP API (`/api/v1/query` and
//! `/api/v1/query_range`): plain HTTP or HTTPS through rustls, optional basic
//! auth or bearer token, every request bounded by `QUERY_TIMEOUT`. Answers
//! are parsed leniently: a sample Prometheus sends that is not a number is
//! skipped, never unwrapped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one query may take, connect to last byte.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer accepted: a fleet's range queries are a few MiB at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why Prometheus could not be queried.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("`{0}` is not a Prometheus URL (expected http(s)://HOST:PORT[/PATH])")]
    BadUrl(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ca-file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot reach Prometheus at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("no answer from {url} within {}s", QUERY_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url} answered {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        url: String,
        status: StatusCode,
        detail: Option<String>,
    },
    #[error("reading the answer from {url} failed: {reason}")]
    Body { url: String, reason: String },
    #[error("{url} did not answer a Prometheus API document: {reason}")]
    NotPrometheus { url: String, reason: String },
    #[error("Prometheus rejected `{query}`: {error}")]
    Rejected { query: String, error: String },
}

/// How to authenticate to Prometheus (or the proxy in front of it).
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password_file: PathBuf,
    },
    BearerFile(PathBuf),
}

/// One series of an answer: its labels and its samples (one for an instant
/// query, many for a range query), non-numbers left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The (last) value of an instant-query series.
    pub fn value(&self) -> Option<f64> {
        self.samples.last().map(|&(_, v)| v)
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A Prometheus HTTP API endpoint.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: HttpsClient,
    authorization: Option<http::HeaderValue>,
}

impl Prometheus {
    /// `url` is Prometheus' base (`http://prom:9090`, or with a path prefix
    /// such as `https://host/prometheus`). Reads credential files now, so a
    /// bad path fails before any query.
    pub fn new(
        url: &str,
        auth: &Auth,
        ca_file: Option<&PathBuf>,
    ) -> Result<Prometheus, QueryError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let parsed: Uri = base
            .parse()
            .map_err(|_| QueryError::BadUrl(url.to_owned()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.authority().is_none() {
            return Err(QueryError::BadUrl(url.to_owned()));
        }
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| QueryError::File {
                    path: path.clone(),
                    source,
                })
        };
        let authorization = match auth {
            Auth::None => None,
            Auth::Basic {
                user,
                password_file,
            } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{}", read(password_file)?).as_bytes())
            )),
            Auth::BearerFile(path) => Some(format!("Bearer {}", read(path)?.trim())),
        }
        .map(|v| {
            let mut v = http::HeaderValue::from_str(&v)
                .map_err(|_| QueryError::BadUrl("credentials with control characters".into()))?;
            v.set_sensitive(true);
            Ok::<_, QueryError>(v)
        })
        .transpose()?;
        Ok(Prometheus {
            base,
            client: client(ca_file)?,
            authorization,
        })
    }

    /// An instant query evaluated at `time` (Unix seconds).
    pub async fn query(&self, query: &str, time: f64) -> Result<Vec<Series>, QueryError> {
        let url = format!(
            "{}/api/v1/query?query={}&time={time:.3}",
            self.base,
            encode(query)
        );
        self.get(&url, query).await
    }

    /// A range query from `start` to `end` every `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, QueryError> {
        let url = format!(
            "{}/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step:.0}",
            self.base,
            encode(query)
        );
        self.get(&url, query).await
    }

    async fn get(&self, url: &str, query: &str) -> Result<Vec<Series>, QueryError> {
        match tokio::time::timeout(QUERY_TIMEOUT, self.fetch(url)).await {
            Ok(Ok(body)) => parse(&body, query).map_err(|e| match e {
                QueryError::NotPrometheus { reason, .. } => QueryError::NotPrometheus {
                    url: self.base.clone(),
                    reason,
                },
                e => e,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueryError::Timeout {
                url: self.base.clone(),
            }),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Bytes, QueryError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| QueryError::BadUrl(self.base.clone()))?;
        let mut req = Request::get(uri).header(http::header::ACCEPT, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Empty::new())
            .map_err(|_| QueryError::BadUrl(self.base.clone()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|source| QueryError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| QueryError::Body {
                url: self.base.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        // Prometheus answers 400/422/503 with an error document: say what it says.
        if status != StatusCode::OK {
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            return Err(QueryError::Status {
                url: self.base.clone(),
                status,
                detail,
            });
        }
        Ok(body)
    }
}

/// Parses a `/api/v1/query(_range)` answer: a `vector`, `matrix` or `scalar`.
pub fn parse(body: &[u8], query: &str) -> Result<Vec<Series>, QueryError> {
    let not = |reason: &str| QueryError::NotPrometheus {
        url: String::new(),
        reason: reason.to_owned(),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| not(&format!("not JSON ({e})")))?;
    match doc["status"].as_str() {
        Some("success") => {}
        Some("error") => {
            return Err(QueryError::Rejected {
                query: query.to_owned(),
                error: doc["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_owned(),
            });
        }
        _ => return Err(not("no `status`")),
    }
    let data = &doc["data"];
    let sample = |v: &serde_json::Value| -> Option<(f64, f64)> {
        let t = v.get(0)?.as_f64()?;
        let x: f64 = v.get(1)?.as_str()?.parse().ok()?;
        Some((t, x))
    };
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => {}
        Some("scalar") => {
            return Ok(sample(&data["result"])
                .map(|s| Series {
                    labels: BTreeMap::new(),
                    samples: vec![s],
                })
                .into_iter()
                .collect());
        }
        _ => return Err(not("no vector or matrix in `data`")),
    }
    let results = data["result"]
        .as_array()
        .ok_or_else(|| not("no `result`"))?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let labels = r["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let samples = if let Some(values) = r["values"].as_array() {
            values.iter().filter_map(sample).collect()
        } else {
            sample(&r["value"]).into_iter().collect()
        };
        out.push(Series { labels, samples });
    }
    Ok(out)
}

fn client(ca_file: Option<&PathBuf>) -> Result<HttpsClient, QueryError> {
    let roots = crate::net::upstream::root_store(ca_file).map_err(|e| QueryError::CaFile {
        path: e.path,
        reason: e.reason,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding, for a basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A PromQL string literal for a label value.
pub fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vectors_and_matrices_and_skips_what_is_not_a_number() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"consumer":"a"},"value":[1700000000.5,"3"]},
            {"metric":{"consumer":"b"},"value":[1700000000.5,"NaN"]},
            {"metric":{"consumer":"c"},"value":["bad"]}]}}"#;
        let s = parse(v, "q").expect("vector");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("consumer"), "a");
        assert_eq!(s[0].value(), Some(3.0));
        assert!(s[1].value().is_some_and(f64::is_nan));
        assert_eq!(s[2].value(), None);
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1,"1"],[2,"2"]]}]}}"#;
        assert_eq!(
            parse(m, "q").expect("matrix")[0].samples,
            [(1.0, 1.0), (2.0, 2.0)]
        );
    }

    #[test]
    fn an_error_document_names_the_query() {
        let e = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let err = parse(e, "up{").expect_err("rejected");
        assert_eq!(err.to_string(), "Prometheus rejected `up{`: parse error");
        assert!(parse(b"<html>", "q").is_err());
        assert!(parse(br#"{"status":"success","data":{}}"#, "q").is_err());
    }

    #[test]
    fn encodes_queries_labels_and_credentials() {
        assert_eq!(encode("a{b=\"c\"}[1h]"), "a%7Bb%3D%22c%22%7D%5B1h%5D");
        assert_eq!(quote("or\"d\\"), "\"or\\\"d\\\\\"");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }
}

//! HTTPS upstreams: a backend on 127.0.0.1:0 behind tokio-rustls with an
//! rcgen self-signed certificate for `localhost` and 127.0.0.1. Trusted
//! through the side's `ca_file`, reads succeed (h2 by ALPN when the backend
//! offers it); untrusted, the TLS failure is a `connect` fallback to batch.

use std::path::PathBuf;
use std::sync::Arc;

use crate::support::*;
use http::Response;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate for localhost and 127.0.0.1, its PEM written to
/// a temp dir for `ca_file`.
struct Cert {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let pem_path = dir.path().join("backend-ca.pem");
    std::fs::write(&pem_path, ck.cert.pem()).expect("write PEM");
    Cert {
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        pem_path,
        _dir: dir,
    }
}

/// A TLS acceptor (rustls, ring) offering `alpn` in order of preference.
fn acceptor(cert: &Cert, alpn: &[&[u8]]) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        )
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS backend answering `body`, reporting the HTTP version it was
/// spoken to in `x-seen-version`.
async fn https_backend(cert: &Cert, alpn: &[&[u8]], body: &'static str) -> Backend {
    Backend::builder()
        .behaviour(Behaviour::custom(move |req| async move {
            Response::builder()
                .header("x-seen-version", format!("{:?}", req.version()))
                .body(full_body(body))
                .expect("response")
        }))
        .tls(acceptor(cert, alpn))
        .start()
        .await
}

fn streaming_side(url: &str, ca_file: Option<&PathBuf>) -> Side {
    let side = Side::new(url).connect_timeout("2s");
    match ca_file {
        Some(ca) => side.ca_file(ca),
        None => side,
    }
}

/// Streaming serves; no idle-side probe, no sampled comparison reads, so
/// hit counts stay exact.
fn config(batch: impl Into<Side>, streaming: Side) -> Route {
    Route::orders(batch, streaming).mode("streaming").quiet()
}

#[tokio::test]
async fn an_https_upstream_trusted_through_ca_file_serves_reads_over_h2() {
    let cert = self_signed();
    let s = https_backend(&cert, &[b"h2", b"http/1.1"], "from streaming over tls").await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let url = format!("https://localhost:{}/v1/orders", s.addr.port());
    let p = Proxy::start(config(
        b.url("/t"),
        streaming_side(&url, Some(&cert.pem_path)),
    ))
    .await;
    for i in 0..3 {
        let r = get(&p.url(&format!("/v1/orders/{i}?q=tls"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(r.header("x-cutover-fallback"), None);
        assert_eq!(r.text(), "from streaming over tls");
        assert_eq!(
            r.header("x-seen-version"),
            Some("HTTP/2.0"),
            "h2 negotiated by ALPN"
        );
    }
    assert_eq!(s.hits(), 3);
    assert_eq!(b.hits(), 0);
    let seen = s.last().expect("streaming saw the read");
    // Over h2 the target arrives in absolute form (:scheme, :authority, :path).
    let uri: http::Uri = seen.uri.parse().expect("URI");
    assert_eq!(
        uri.path_and_query().map(|p| p.as_str()),
        Some("/v1/orders/2?q=tls")
    );
    assert_eq!(
        uri.authority().map(|a| a.as_str()),
        Some(format!("localhost:{}", s.addr.port()).as_str())
    );
    let m = p.scrape().await;
    assert_eq!(m.upstream("streaming", "ok"), 3.0);
    p.stop().await;
}

#[tokio::test]
async fn an_https_upstream_speaking_only_http1_is_read_over_http1() {
    let cert = self_signed();
    let s = https_backend(&cert, &[b"http/1.1"], "h1 over tls").await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    // By IP this time: the certificate names 127.0.0.1 too.
    let url = format!("https://127.0.0.1:{}/v1/orders", s.addr.port());
    let p = Proxy::start(config(
        b.url("/t"),
        streaming_side(&url, Some(&cert.pem_path)),
    ))
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.text(), "h1 over tls");
    assert_eq!(r.header("x-seen-version"), Some("HTTP/1.1"));
    assert_eq!(
        s.seen.lock().unwrap()[0].headers["host"],
        format!("127.0.0.1:{}", s.addr.port()).as_str()
    );
    p.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_fallback_to_batch() {
    let cert = self_signed();
    let s = https_backend(&cert, &[b"h2", b"http/1.1"], "never").await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let url = format!("https://localhost:{}/v1/orders", s.addr.port());
    let p = Proxy::start(config(b.url("/t"), streaming_side(&url, None))).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("connect"));
    assert_eq!(r.text(), "from batch");
    assert_eq!(
        s.hits(),
        0,
        "no request may cross an unverified TLS session"
    );
    let m = p.scrape().await;
    assert_eq!(m.upstream("streaming", "connect"), 1.0);
    assert_eq!(m.fallbacks("connect"), 1.0);
    p.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_connect_fallback() {
    // Trusted, but issued for other names than the one in the side URL.
    let ck =
        rcgen::generate_simple_self_signed(vec!["data.example".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let pem_path = dir.path().join("other.pem");
    std::fs::write(&pem_path, ck.cert.pem()).expect("write PEM");
    let cert = Cert {
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        pem_path,
        _dir: dir,
    };
    let s = https_backend(&cert, &[b"h2"], "never").await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let url = format!("https://localhost:{}/v1/orders", s.addr.port());
    let p = Proxy::start(config(
        b.url("/t"),
        streaming_side(&url, Some(&cert.pem_path)),
    ))
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("connect"));
    assert_eq!(s.hits(), 0);
    p.stop().await;
}

#[tokio::test]
async fn a_ca_file_that_is_not_a_certificate_stops_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bogus = dir.path().join("not-a-cert.pem");
    std::fs::write(&bogus, "this is not PEM\n").expect("write");
    let down = refusing_addr();
    let (_cfg_dir, path) = config_file(config(
        format!("http://{down}/t"),
        streaming_side(
            &format!("https://localhost:{}/v1/orders", down.port()),
            Some(&bogus),
        ),
    ));
    let err = within(cutover::start(&path))
        .await
        .err()
        .expect("start refuses a bad ca_file");
    let msg = err.to_string();
    assert!(
        msg.contains("not-a-cert.pem"),
        "error names the file: {msg}"
    );
}

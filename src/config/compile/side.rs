//! A route's two sides (`batch`, `streaming`) and the `defaults` they
//! share: URL, timeouts, in-flight cap, and the CA file, which is read here
//! to check it holds a certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::super::locate::YamlPath;
use super::super::model::Side;
use super::super::raw::{RawDefaults, RawSide, RawSideMap};
use super::Cx;
use super::scalars::{parse_count, parse_timeout};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Batch's `timeout` when neither the side nor `defaults` sets one: nginx's
/// `proxy_read_timeout`, so a slow warehouse query that answers directly
/// answers through cutover in batch mode too (SPEC 1.2).
const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Streaming's: it must answer fast, and batch is there when it does not.
const DEFAULT_STREAMING_TIMEOUT: Duration = Duration::from_secs(2);

/// Side settings from `defaults`, already parsed.
#[derive(Default)]
pub(super) struct SideDefaults {
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    max_inflight: Option<usize>,
    ca_file: Option<PathBuf>,
}

impl Cx<'_> {
    pub(super) fn defaults(&mut self, raw: &RawDefaults, at: &YamlPath) -> SideDefaults {
        SideDefaults {
            connect_timeout: self.parse(
                &raw.connect_timeout,
                &at.key("connect_timeout"),
                parse_timeout,
            ),
            timeout: self.parse(&raw.timeout, &at.key("timeout"), parse_timeout),
            max_inflight: self.parse(&raw.max_inflight, &at.key("max_inflight"), |s| {
                parse_count(s, 1)
            }),
            ca_file: self.ca_file(&raw.ca_file, &at.key("ca_file")),
        }
    }

    fn ca_file(&mut self, raw: &Option<String>, at: &YamlPath) -> Option<PathBuf> {
        let dir = self.dir.clone();
        self.parse(raw, at, |s| check_ca_file(&dir, s))
    }

    pub(super) fn side(
        &mut self,
        raw: &Option<RawSide>,
        at: &YamlPath,
        which: &str,
        defaults: &SideDefaults,
    ) -> Option<Side> {
        let empty = RawSideMap::default();
        let (url, url_at, over) = match raw {
            None => {
                self.missing(
                    at,
                    format!("route has no `{which}` side (a URL, e.g. {which}: http://127.0.0.1:7001/path)"),
                );
                return None;
            }
            Some(RawSide::Url(u)) => (Some(u.clone()), at.clone(), &empty),
            Some(RawSide::Full(m)) => (m.url.clone(), at.key("url"), m),
        };
        let url = match url {
            None => {
                self.missing(&url_at, format!("`{which}` has no `url`"));
                None
            }
            some => self.parse(&some, &url_at, parse_url),
        };
        let connect_timeout = self.parse(
            &over.connect_timeout,
            &at.key("connect_timeout"),
            parse_timeout,
        );
        let timeout = self.parse(&over.timeout, &at.key("timeout"), parse_timeout);
        let max_inflight = self.parse(&over.max_inflight, &at.key("max_inflight"), |s| {
            parse_count(s, 1)
        });
        let ca_file = self.ca_file(&over.ca_file, &at.key("ca_file"));
        let url = url?;
        Some(Side {
            scheme: url.scheme,
            authority: url.authority,
            base_path: url.base_path,
            base_query: url.base_query,
            connect_timeout: connect_timeout
                .or(defaults.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            timeout: timeout
                .or(defaults.timeout)
                .unwrap_or(default_timeout(which)),
            max_inflight: max_inflight.or(defaults.max_inflight),
            ca_file: ca_file.or_else(|| defaults.ca_file.clone()),
        })
    }
}

/// A side's `timeout` when neither it nor `defaults` says: batch's is
/// nginx's read timeout, streaming's the short one fallback relies on.
fn default_timeout(which: &str) -> Duration {
    if which == "batch" {
        DEFAULT_BATCH_TIMEOUT
    } else {
        DEFAULT_STREAMING_TIMEOUT
    }
}

/// The parts of an upstream URL that a side keeps.
#[derive(Debug)]
struct SideUrl {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    base_query: Option<String>,
}

fn parse_url(s: &str) -> Result<SideUrl, String> {
    let hint = "e.g. http://127.0.0.1:7001/tables/orders";
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("bad URL `{s}`: {e} ({hint})"))?;
    let scheme = match uri.scheme() {
        Some(sc) if *sc == Scheme::HTTP || *sc == Scheme::HTTPS => sc.clone(),
        Some(sc) => {
            return Err(format!("bad URL `{s}`: scheme `{sc}` is not http or https"));
        }
        None => {
            return Err(format!(
                "bad URL `{s}`: expected http:// or https:// and a host ({hint})"
            ));
        }
    };
    let authority = match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            return Err(format!(
                "bad URL `{s}`: credentials (user@) are not allowed in a URL"
            ));
        }
        Some(a) if a.as_str() != a.host() && a.port_u16().is_none() => {
            return Err(format!("bad URL `{s}`: bad port (expected 1 to 65535)"));
        }
        Some(a) if !a.host().is_empty() => a.clone(),
        _ => return Err(format!("bad URL `{s}`: no host ({hint})")),
    };
    if s.contains('#') {
        return Err(format!(
            "bad URL `{s}`: a fragment (#...) is never sent upstream; remove it"
        ));
    }
    Ok(SideUrl {
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        base_query: uri.query().map(str::to_owned),
    })
}

/// Resolves `s` against the config's directory and checks it holds at
/// least one PEM certificate.
fn check_ca_file(dir: &Path, s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("`ca_file` is empty".to_owned());
    }
    let path = dir.join(s);
    let pem = std::fs::read(&path)
        .map_err(|e| format!("cannot read ca_file `{}`: {e}", path.display()))?;
    let mut certs = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("bad PEM in ca_file `{}`: {e}", path.display()))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(format!(
            "ca_file `{}` holds no PEM certificate",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::fixtures::{MINIMAL, ok};
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_nothing_secret() {
        let u = parse_url("http://127.0.0.1:7001/tables/orders/").unwrap();
        assert_eq!(u.scheme, Scheme::HTTP);
        assert_eq!(u.authority.as_str(), "127.0.0.1:7001");
        assert_eq!(u.base_path, "/tables/orders");
        assert_eq!(u.base_query, None);
        let u = parse_url("https://h/?a=1").unwrap();
        assert_eq!(
            (u.base_path.as_str(), u.base_query.as_deref()),
            ("", Some("a=1"))
        );
        assert_eq!(parse_url("http://h").unwrap().base_path, "");
        for bad in [
            "ftp://h/x",
            "/just/a/path",
            "127.0.0.1:7001",
            "http://user:pw@h/x",
            "http://h/x#frag",
            "http:///x",
            "http://h:99999/",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_timeout_applies_to_both_sides_and_a_sides_own_wins() {
        let both = ok(&MINIMAL.replace("routes:", "defaults: { timeout: 3s }\nroutes:"));
        assert_eq!(both.routes[0].batch.timeout, Duration::from_secs(3));
        assert_eq!(both.routes[0].streaming.timeout, Duration::from_secs(3));
        let own = ok(&MINIMAL
            .replace("routes:", "defaults: { timeout: 3s }\nroutes:")
            .replace(
                "batch: http://127.0.0.1:7001/tables/orders/",
                "batch: { url: 'http://127.0.0.1:7001/tables/orders/', timeout: 90s }",
            ));
        assert_eq!(own.routes[0].batch.timeout, Duration::from_secs(90));
        assert_eq!(own.routes[0].streaming.timeout, Duration::from_secs(3));
    }

    #[test]
    fn ca_file_is_relative_to_the_config_and_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let config = dir.path().join("c.yaml");
        let text = format!(
            "{MINIMAL}    batch: {{ url: 'https://b/', ca_file: empty.pem }}\ndefaults: {{ ca_file: ca.pem }}\n"
        )
        .replace("    batch: http://127.0.0.1:7001/tables/orders/\n", "");
        let err = compile(&config, &text, 1).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(
            err.0[0].message.contains("holds no PEM certificate"),
            "{err}"
        );
        let text = text.replace("empty.pem", "ca.pem");
        let c = compile(&config, &text, 1).unwrap();
        assert_eq!(c.routes[0].batch.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(
            c.routes[0].streaming.ca_file,
            Some(dir.path().join("ca.pem"))
        );
        let text = text.replace("ca_file: ca.pem }\n", "ca_file: nope.pem }\n");
        let err = compile(&config, &text, 1).unwrap_err();
        assert!(err.0[0].message.starts_with("cannot read ca_file"), "{err}");
    }
}

//! Data, not bytes (SPEC 1.2), through the real proxy in shadow mode: every
//! content encoding on one side against plain on the other, in every text
//! format, with the records in another order, counts a match and nothing
//! else; a bomb and a cut-short stream are skipped, never compared.

use std::io::Write;

use serde_json::json;

use super::*;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn encode(coding: &str, b: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => gzip(b),
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(b).unwrap();
            drop(w);
            out
        }
        "zstd" => zstd::encode_all(b, 3).unwrap(),
        _ => b.to_vec(),
    }
}

const CODINGS: [&str; 4] = ["gzip", "deflate", "br", "zstd"];

/// Batch's answer, plain, and streaming's: the same records in another
/// order (and, per format, written another way), one read per coding.
struct Case {
    format: &'static str,
    content_type: &'static str,
    batch: &'static str,
    streaming: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        format: "json",
        content_type: "application/json",
        batch: r#"{"data":[{"id":1,"v":"a"},{"id":2,"v":"b, c"}]}"#,
        streaming: r#"{"data":[{"v":"b, c","id":2},{"id":1,"v":"a"}]}"#,
    },
    Case {
        format: "ndjson",
        content_type: "application/x-ndjson",
        batch: "{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"b, c\"}\n",
        // Blank last line, CRLF.
        streaming: "{\"id\":2,\"v\":\"b, c\"}\r\n{\"v\":\"a\",\"id\":1}\r\n\r\n",
    },
    Case {
        format: "csv",
        content_type: "text/csv; charset=utf-8",
        batch: "id,v\n1,a\n2,\"b, c\"\n",
        // A BOM, the columns in another order, CRLF.
        streaming: "\u{feff}v,id\r\n\"b, c\",2\r\na,1\r\n",
    },
    Case {
        format: "tsv",
        content_type: "text/tab-separated-values",
        batch: "id\tv\n1\ta\n2\tb, c\n",
        streaming: "v\tid\nb, c\t2\na\t1\n",
    },
];

#[tokio::test]
async fn every_encoding_of_every_format_reconciles_as_the_same_data() {
    for case in &CASES {
        let plain = |body: &'static str| {
            let mut c = json(body);
            c.headers.push(("content-type", case.content_type));
            c
        };
        let batch = fixed(plain(case.batch)).await;
        let mut answers = Vec::new();
        for coding in CODINGS {
            let mut c = plain(case.streaming);
            c.body = encode(coding, case.streaming.as_bytes()).into();
            c.headers.push(("content-encoding", coding));
            answers.push((coding, c));
        }
        let streaming = canned_backend(answers).await;
        let p = Proxy::start(
            orders(&batch, streaming.url("/s/orders"))
                .mode("shadow")
                .reconcile(json!({"records": "/data", "key": "id"})),
        )
        .await;
        for coding in CODINGS {
            let a = get(&p.url(&format!("/v1/orders/{coding}"))).await;
            assert_eq!(a.status, 200, "{} {coding}", case.format);
            assert_eq!(
                &a.body[..],
                case.batch.as_bytes(),
                "the consumer gets batch's bytes"
            );
        }
        let m = settle(&p, &format!("{}: four comparisons", case.format), |m| {
            compared(m, "orders") >= 4.0
        })
        .await;
        let lines = reconcile_lines(&m);
        assert_eq!(
            m.route("orders").reconciled("match"),
            4.0,
            "{}\n{lines}",
            case.format
        );
        for c in CATEGORIES.iter().chain(["schema"].iter()) {
            assert_eq!(
                m.route("orders").divergences(c),
                0.0,
                "{} {c}\n{lines}",
                case.format
            );
        }
    }
}

#[tokio::test]
async fn a_gzip_bomb_and_a_cut_short_stream_are_skipped_not_compared() {
    // 1 GiB of zeros as 1,024 gzip members of 1 MiB each: about 1 MB sent.
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb: Vec<u8> = member.repeat(1024);
    let whole = gzip(br#"{"data":[{"id":1,"v":"a"}]}"#);
    let cut = whole[..whole.len() - 6].to_vec();
    let batch = fixed(json(r#"{"data":[{"id":1,"v":"a"}]}"#)).await;
    let coded = |body: Vec<u8>| {
        let mut c = json(body);
        c.headers.push(("content-encoding", "gzip"));
        c
    };
    let streaming = canned_backend(vec![("bomb", coded(bomb)), ("cut", coded(cut))]).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(json!({"records": "/data", "key": "id"})),
    )
    .await;
    assert_eq!(get(&p.url("/v1/orders/bomb")).await.status, 200);
    assert_eq!(get(&p.url("/v1/orders/cut")).await.status, 200);
    let m = settle(&p, "both skipped", |m| {
        m.route("orders").skipped("too_large") == 1.0
            && m.route("orders").skipped("encoding") == 1.0
    })
    .await;
    assert_eq!(m.route("orders").reconciled("match"), 0.0);
    assert_eq!(m.route("orders").reconciled("diverged"), 0.0);
    // The proxy is still there, and still compares.
    assert_eq!(get(&p.url("/v1/orders/bomb")).await.status, 200);
}

//! Every divergence category through the real proxy, produced exactly (and
//! not over-produced), and the divergence ratio as diverged over compared.

use bytes::Bytes;

use super::*;

/// A name, streaming's answer, the expected result, the expected counts.
type Case = (&'static str, Canned, &'static str, Vec<(&'static str, f64)>);

#[tokio::test]
async fn every_category_is_counted_exactly_through_the_proxy() {
    let batch_page = page(&[B1, B2, B3]);
    let cases: Vec<Case> = vec![
        (
            "reordered records, reordered fields, an ignored field, 100 vs 100.0",
            json(page(&[S3, S1, S2])),
            "match",
            vec![],
        ),
        (
            "missing",
            json(page(&[S1, S2])),
            "diverged",
            vec![("missing", 1.0)],
        ),
        (
            "extra",
            json(page(&[S1, S2, S3, S4])),
            "diverged",
            vec![("extra", 1.0)],
        ),
        (
            "duplicate",
            json(page(&[S1, S2, S2, S3])),
            "diverged",
            vec![("duplicate", 1.0)],
        ),
        (
            "aggregate beyond tolerance",
            json(page(&[S1, S2_AGG, S3])),
            "diverged",
            vec![("aggregate", 1.0)],
        ),
        (
            "within tolerance",
            json(page(&[S1, S2_TOL, S3])),
            "match",
            vec![],
        ),
        (
            "all at once",
            json(page(&[S1, S1, S2_AGG, S4, S7])),
            "diverged",
            vec![
                ("duplicate", 1.0),
                ("aggregate", 1.0),
                ("missing", 1.0),
                ("extra", 2.0),
            ],
        ),
        (
            "timing alone is a match",
            json(page(&[S1, S2_LATE, S3, S5_LATE])),
            "match",
            vec![("timing", 2.0)],
        ),
        (
            "timing beside a real extra",
            json(page(&[S1, S2, S3, S5_LATE, S4])),
            "diverged",
            vec![("timing", 1.0), ("extra", 1.0)],
        ),
        (
            "no record array on one side",
            json(r#"{"error":"try later"}"#),
            "diverged",
            vec![("body", 1.0)],
        ),
        (
            "status: batch 200, streaming 404",
            canned(404, r#"{"error":"not found"}"#, None),
            "diverged",
            vec![("status", 1.0)],
        ),
    ];
    for (case, mut streaming_answer, want_result, want) in cases {
        let batch = fixed(canned(200, batch_page.clone(), Some(BATCH_WM))).await;
        if streaming_answer.status == 200 {
            streaming_answer.watermark = Some(STREAMING_WM);
        }
        let streaming = fixed(streaming_answer).await;
        let p = Proxy::start(
            orders(&batch, streaming.url("/s/orders"))
                .mode("shadow")
                .reconcile(keyed()),
        )
        .await;
        let a = get(&p.url("/v1/orders/list?day=2024-05-01")).await;
        assert_eq!(a.status, 200, "{case}");
        assert_eq!(a.body, Bytes::from(batch_page.clone()), "{case}");
        expect_exactly(&p, case, want_result, &want).await;
    }
}

#[tokio::test]
async fn divergence_ratio_is_diverged_over_compared() {
    let batch = canned_backend(vec![("", json(page(&[B1, B2, B3])))]).await;
    let streaming = canned_backend(vec![
        ("/same", json(page(&[S1, S2, S3]))),
        ("/differs", json(page(&[S1, S2]))),
    ])
    .await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(keyed()),
    )
    .await;
    let m = p.scrape().await;
    assert_eq!(
        m.route("orders").divergence_ratio(),
        0.0,
        "nothing compared yet"
    );

    get(&p.url("/v1/orders/same")).await;
    settle(&p, "the first comparison", |m| {
        m.route("orders").reconciled("match") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/differs")).await;
    let m = settle(&p, "the second comparison", |m| {
        m.route("orders").reconciled("diverged") == 1.0
    })
    .await;
    assert_eq!(
        m.route("orders").divergence_ratio(),
        0.5,
        "{}",
        reconcile_lines(&m)
    );

    for _ in 0..2 {
        get(&p.url("/v1/orders/same")).await;
    }
    let m = settle(&p, "four comparisons", |m| {
        m.route("orders").reconciled("match") == 3.0
    })
    .await;
    assert_eq!(
        m.route("orders").divergence_ratio(),
        0.25,
        "{}",
        reconcile_lines(&m)
    );
    assert_eq!(m.route("orders").divergences("missing"), 1.0);
}

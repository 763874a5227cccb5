//! Subscribers end to end: a signed circle alert over a 200,000-subscriber
//! synthetic audience reaches exactly the subscribers whose H3 cell centre
//! lies in the circle (checked by brute force), each exactly once, on every
//! subscriber channel (in-process counting sinks stand in for providers).

mod support;

use std::sync::Arc;

use support::*;
use tocsin::alert::cap::Point;
use tocsin::channel::{Channel, SubscriberKind};
use tocsin::daemon::Daemon;
use tocsin::ingest::Receipt;
use tocsin::target::area::Region;

const N: u32 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_reaches_exactly_the_subscribers_inside_once() {
    let dir = tempfile::tempdir().unwrap();
    let audience = Arc::new(tocsin::demo::synthetic_audience(N, 7));
    let sinks = subscriber_sinks(N as usize);
    let extras = sink_extras(
        sinks.iter().map(|s| s.clone() as Arc<dyn Channel>),
        &audience,
    );
    let mut s = settings(dir.path(), &[]);
    s.dispatch.batch_size = 512;
    let d = Daemon::start(s, extras).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    let r = c
        .submit(&sign(&alert_xml("tgt-1"), "gz-1", &key(1)))
        .await
        .unwrap();
    let Receipt::Accepted { targeted, .. } = r else {
        panic!("{r:?}")
    };
    assert!(
        wait_for(30, || d
            .dispatcher()
            .progress(1)
            .is_some_and(|p| p.is_done()))
        .await
    );

    let circle = Region::circle(
        Point {
            lat: 23.1291,
            lon: 113.2644,
        },
        100.0,
    )
    .unwrap();
    let mut expected_total = 0u64;
    for (kind, sink) in SubscriberKind::ALL.iter().zip(&sinks) {
        let idx = audience.channel(*kind);
        let mut expected = 0u64;
        for (pos, &id) in idx.ids().iter().enumerate() {
            let cell = h3o::CellIndex::try_from(idx.cells()[pos]).unwrap();
            let ll = h3o::LatLng::from(cell);
            let inside = circle.contains(Point {
                lat: ll.lat(),
                lon: ll.lng(),
            });
            assert_eq!(
                sink.count(id),
                u8::from(inside),
                "{} subscriber {id}",
                kind.as_str()
            );
            expected += u64::from(inside);
        }
        assert!(
            expected > 1000,
            "{}: the circle should cover many",
            kind.as_str()
        );
        assert_eq!(sink.total(), expected);
        expected_total += expected;
    }
    assert_eq!(
        targeted, expected_total,
        "receipt count (no partners configured)"
    );
    c.close().await;
    d.shutdown().await;
}

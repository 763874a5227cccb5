//! Widening radius end to end, on a simulated clock (`dispatch.clock_speed`):
//! a missing-child alert's circle grows 30 → 60 → 120 → 600 km (capped by the
//! Guangzhou authority's 400 km jurisdiction) over a 200,000-subscriber
//! synthetic audience. Every stage reaches exactly its new ring (checked by
//! brute force against H3 cell centres), nobody gets the alert twice, the
//! steps survive a daemon restart between them, partners are reached in the
//! step that first touches their coverage and never outside the jurisdiction,
//! an Update moves the centre and a Cancel stops the steps.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tocsin::alert::cap::Point;
use tocsin::channel::sink::SinkChannel;
use tocsin::channel::{Channel, PartnerRole, Reach, SubscriberKind};
use tocsin::config::{AreaSettings, CircleSettings, PartnerSettings, Settings, WidenStepSettings};
use tocsin::daemon::{Daemon, Extras};
use tocsin::dispatch::{AlertProgress, ChannelLimits};
use tocsin::ingest::Receipt;
use tocsin::journal::AlertState;
use tocsin::subscribers::Audience;
use tocsin::target::area::Region;

const N: u32 = 200_000;
const GZ: Point = Point {
    lat: 23.1291,
    lon: 113.2644,
};
/// Steps: minutes after the first alert, radius km.
const STEPS: [(u64, f64); 4] = [(0, 30.0), (60, 60.0), (120, 120.0), (180, 600.0)];
/// The gz authority's jurisdiction (tests/support): 400 km round Guangzhou.
const JURISDICTION_KM: f64 = 400.0;

fn circle(c: Point, r: f64) -> Region {
    Region::circle(c, r).unwrap()
}

/// Partners: one near the centre, one 150–170 km out (reached at the 3rd
/// step), one only inside the 600 km circle beyond the jurisdiction.
const PARTNERS: [(&str, f64, f64, f64); 3] = [
    ("near", 23.13, 113.26, 10.0),
    ("ring", 23.1291, 114.9, 10.0),   // ~167 km east
    ("beyond", 23.1291, 118.4, 10.0), // ~525 km east
];

/// Settings with the CAE standard widening on a fast clock, sink channels
/// for every subscriber kind and for the partner feed.
fn widening_settings(dir: &std::path::Path, speed: f64) -> Settings {
    let mut s = settings(dir, &[]);
    s.dispatch.clock_speed = speed;
    s.dispatch.batch_size = 256;
    s.standards[0].widen = STEPS
        .iter()
        .map(|&(after_minutes, radius_km)| WidenStepSettings {
            after_minutes,
            radius_km,
        })
        .collect();
    for (name, lat, lon, r) in PARTNERS {
        s.partners.push(PartnerSettings {
            name: name.into(),
            endpoint: "http://127.0.0.1:9/unused".into(),
            secret: Some("s".into()),
            secret_file: None,
            coverage: AreaSettings {
                circles: vec![CircleSettings {
                    lat,
                    lon,
                    radius_km: r,
                }],
                ..Default::default()
            },
            tests: false,
            feed: true,
            label: None,
        });
    }
    s
}

struct Sinks {
    subscribers: Vec<Arc<SinkChannel>>,
    feed: Arc<SinkChannel>,
}

impl Sinks {
    fn new() -> Self {
        Self {
            subscribers: SubscriberKind::ALL
                .iter()
                .map(|k| {
                    Arc::new(SinkChannel::new(
                        k.as_str(),
                        Reach::Subscribers(*k),
                        N as usize,
                    ))
                })
                .collect(),
            feed: Arc::new(SinkChannel::new(
                "feed",
                Reach::Partners(PartnerRole::Feed),
                16,
            )),
        }
    }

    fn extras(&self, audience: &Arc<Audience>) -> Extras {
        let limits = ChannelLimits {
            concurrency: 4096,
            rate_per_sec: 1e7,
            burst: 100_000,
        };
        let mut channels: Vec<(Arc<dyn Channel>, ChannelLimits)> = self
            .subscribers
            .iter()
            .map(|s| (s.clone() as Arc<dyn Channel>, limits))
            .collect();
        channels.push((self.feed.clone() as Arc<dyn Channel>, limits));
        Extras {
            channels,
            audience: Some(audience.clone()),
        }
    }

    fn sink(&self, kind: SubscriberKind) -> &SinkChannel {
        &self.subscribers[kind as usize]
    }
}

/// Positions of `kind`'s subscribers whose H3 cell centre satisfies `f`, as ids.
fn ids_where(audience: &Audience, kind: SubscriberKind, f: impl Fn(Point) -> bool) -> Vec<u32> {
    let idx = audience.channel(kind);
    idx.ids()
        .iter()
        .enumerate()
        .filter(|&(pos, _)| {
            let ll = h3o::LatLng::from(h3o::CellIndex::try_from(idx.cells()[pos]).unwrap());
            f(Point {
                lat: ll.lat(),
                lon: ll.lng(),
            })
        })
        .map(|(_, &id)| id)
        .collect()
}

/// The sample alert centred on `c` with a 10 km circle.
fn alert_at(ident: &str, c: Point) -> String {
    alert_xml(ident).replace(
        "<circle>23.1291,113.2644 100</circle>",
        &format!("<circle>{},{} 10</circle>", c.lat, c.lon),
    )
}

/// Targeted per stage of an alert, summed over its jobs.
fn targeted_by_stage(p: &AlertProgress, channel: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for j in p.jobs().iter().filter(|j| j.channel == channel) {
        let s = j.stage as usize;
        if out.len() <= s {
            out.resize(s + 1, 0);
        }
        out[s] += j.targeted.load(std::sync::atomic::Ordering::Relaxed);
    }
    out
}

async fn wait_stage_done(d: &Daemon, seq: u64, stage: u32, secs: u64) -> bool {
    wait_for(secs, || {
        d.dispatcher().progress(seq).is_some_and(|p| {
            let jobs: Vec<_> = p.jobs().into_iter().filter(|j| j.stage == stage).collect();
            !jobs.is_empty()
                && jobs
                    .iter()
                    .all(|j| j.done.load(std::sync::atomic::Ordering::Acquire))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_reaches_only_its_ring_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let audience = Arc::new(tocsin::demo::synthetic_audience(N, 11));
    let sinks = Sinks::new();
    // An hour every 6 s: stage 1 at 6 s, 2 at 12 s, 3 at 18 s.
    let speed = 600.0;
    let d = Daemon::start(
        widening_settings(dir.path(), speed),
        sinks.extras(&audience),
    )
    .await
    .unwrap();
    let r = submit(dir.path(), d.ingest_addr, &alert_at("widen-1", GZ)).await;
    let Receipt::Accepted { targeted, .. } = r else {
        panic!("{r:?}")
    };
    // Stage 0 is the alert as accepted: 30 km round the last-seen point.
    assert!(wait_stage_done(&d, 1, 0, 30).await);
    let stage0 = sinks.sink(SubscriberKind::Apns).total();
    assert!(stage0 > 100, "stage 0 reached {stage0}");
    // Restart after the first widening step, before the second.
    assert!(wait_stage_done(&d, 1, 1, 30).await, "stage 1 ran");
    let p = d.dispatcher().progress(1).unwrap();
    assert!(
        !p.jobs().iter().any(|j| j.stage >= 2),
        "stage 2 started before the restart: the clock is too fast for this machine"
    );
    d.shutdown().await;
    let d = Daemon::start(
        widening_settings(dir.path(), speed),
        sinks.extras(&audience),
    )
    .await
    .unwrap();
    assert!(
        wait_stage_done(&d, 1, 2, 40).await,
        "stage 2 ran after the restart"
    );
    assert!(
        wait_for(40, || d
            .dispatcher()
            .progress(1)
            .is_some_and(|p| p.is_done()))
        .await,
        "every stage done"
    );

    // Brute force: the final area is the 600 km circle within the 400 km
    // jurisdiction; each subscriber there got the alert once, nobody else.
    let radii: Vec<f64> = STEPS.iter().map(|s| s.1).collect();
    let juris = circle(GZ, JURISDICTION_KM);
    let within = |p: Point, r: f64| circle(GZ, r).contains(p) && juris.contains(p);
    let p = d.dispatcher().progress(1).unwrap();
    for kind in SubscriberKind::ALL {
        let sink = sinks.sink(kind);
        let reached = ids_where(&audience, kind, |p| within(p, radii[3]));
        for &id in &reached {
            assert_eq!(sink.count(id), 1, "{} subscriber {id}", kind.as_str());
        }
        assert_eq!(sink.total(), reached.len() as u64, "{}", kind.as_str());
        // Per ring (after the restart the resumed stages are planned again).
        let mut rings = Vec::new();
        for (i, &r) in radii.iter().enumerate() {
            let inner = if i == 0 { 0.0 } else { radii[i - 1] };
            rings.push(
                ids_where(&audience, kind, |p| within(p, r) && !within(p, inner)).len() as u64,
            );
        }
        assert!(rings.iter().all(|&n| n > 0), "{rings:?}");
        let planned = targeted_by_stage(&p, kind.as_str());
        // Stages 0 and 1 ran before the restart; the second daemon resumes
        // them from done cursors (targeted again, nothing sent) and runs 2, 3.
        assert_eq!(planned, rings, "{} targeted per stage", kind.as_str());
    }
    // Partners: near in stage 0, ring when the circle reaches it (120 km <
    // 157 km to its edge < 600 km, so stage 3), beyond never (outside the
    // jurisdiction).
    assert_eq!(sinks.feed.count(0), 1);
    assert_eq!(sinks.feed.count(1), 1);
    assert_eq!(sinks.feed.count(2), 0);
    assert_eq!(targeted_by_stage(&p, "feed"), vec![1, 0, 0, 1]);
    assert!(targeted > 0);
    let j = d.journal().clone();
    let state = || j.alert(1).unwrap().unwrap().state;
    assert!(
        wait_for(10, || state() == AlertState::Completed).await,
        "{:?}",
        state()
    );
    let rec = j.alert(1).unwrap().unwrap();
    let e = rec.expansion.expect("journaled schedule");
    assert_eq!((e.first, e.stages(), e.capped), (0, 4, true));
    let cursors = j.cursors(1).unwrap();
    for name in ["apns", "apns@1", "apns@2", "apns@3", "feed@3"] {
        assert!(
            cursors.get(name).is_some_and(|c| c.done),
            "{name}: {cursors:?}"
        );
    }
    drop(j);
    d.shutdown().await;
    // Closed on shutdown: the state directory opens again.
    drop(tocsin::journal::Journal::open(dir.path()).expect("journal closed by shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_moves_the_centre_and_a_cancel_stops_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let audience = Arc::new(tocsin::demo::synthetic_audience(N, 12));
    let sinks = Sinks::new();
    // An hour every 10 s.
    let speed = 360.0;
    let t0 = std::time::Instant::now();
    let d = Daemon::start(
        widening_settings(dir.path(), speed),
        sinks.extras(&audience),
    )
    .await
    .unwrap();
    let original = alert_at("move-1", GZ);
    let r = submit(dir.path(), d.ingest_addr, &original).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_stage_done(&d, 1, 0, 30).await);

    // The child was seen 60 km north-east: the Update moves the centre.
    let moved = Point {
        lat: 23.5,
        lon: 113.7,
    };
    let update = follow_up(&original, "move-2", "Update").replace(
        "<circle>23.1291,113.2644 10</circle>",
        &format!("<circle>{},{} 10</circle>", moved.lat, moved.lon),
    );
    let r = submit(dir.path(), d.ingest_addr, &update).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_stage_done(&d, 2, 0, 30).await);
    let old0 = |p: Point| circle(GZ, 30.0).contains(p);
    let new0 = |p: Point| circle(moved, 30.0).contains(p);
    // Push: everyone the original reached gets the update (same collapse id),
    // and so does everyone in the moved circle. SMS (no sms_on_update):
    // only newcomers, who never had the alert.
    let reached_first: std::collections::HashSet<u32> =
        ids_where(&audience, SubscriberKind::Apns, old0)
            .into_iter()
            .collect();
    for id in ids_where(&audience, SubscriberKind::Apns, |p| old0(p) || new0(p)) {
        let expected = 1 + u8::from(reached_first.contains(&id));
        assert_eq!(
            sinks.sink(SubscriberKind::Apns).count(id),
            expected,
            "apns {id}"
        );
    }
    let sms = sinks.sink(SubscriberKind::Sms);
    let sms_new = ids_where(&audience, SubscriberKind::Sms, |p| new0(p) && !old0(p));
    assert!(!sms_new.is_empty());
    for id in ids_where(&audience, SubscriberKind::Sms, |p| old0(p) || new0(p)) {
        assert_eq!(sms.count(id), 1, "sms {id}");
    }
    assert!(sms.total() >= sms_new.len() as u64);

    // The next step widens round the new centre only.
    assert!(wait_stage_done(&d, 2, 1, 30).await);
    let ring = |p: Point| circle(moved, 60.0).contains(p) && !new0(p) && !old0(p);
    let apns_ring = ids_where(&audience, SubscriberKind::Apns, ring);
    assert!(!apns_ring.is_empty());
    for &id in &apns_ring {
        assert_eq!(sinks.sink(SubscriberKind::Apns).count(id), 1);
    }
    let p = d.dispatcher().progress(2).unwrap();
    assert_eq!(
        targeted_by_stage(&p, "apns")[1],
        apns_ring.len() as u64,
        "stage 1 of the Update"
    );
    assert!(
        d.dispatcher().progress(1).unwrap().is_done(),
        "the original stopped widening when updated"
    );

    // The child is found: the Cancel reaches everyone reached, and no step follows.
    let before = sinks.sink(SubscriberKind::Apns).total();
    let cancel = follow_up(&update, "move-3", "Cancel");
    let r = submit(dir.path(), d.ingest_addr, &cancel).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(
        wait_for(30, || d
            .dispatcher()
            .progress(3)
            .is_some_and(|p| p.is_done()))
        .await
    );
    let reached = ids_where(&audience, SubscriberKind::Apns, |p| {
        old0(p) || circle(moved, 60.0).contains(p)
    });
    assert_eq!(
        sinks.sink(SubscriberKind::Apns).total() - before,
        reached.len() as u64,
        "the found message went to everyone reached"
    );
    // Stage 2 of the Update was due 2 h (20 s) after the original; wait past it.
    tokio::time::sleep_until((t0 + Duration::from_secs(21)).into()).await;
    let p = d.dispatcher().progress(2).unwrap();
    assert!(p.is_done());
    assert!(
        p.jobs().iter().all(|j| j.stage <= 1),
        "no step after the Cancel"
    );
    assert_eq!(
        d.journal().alert(2).unwrap().unwrap().state,
        AlertState::Cancelled
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_sets_its_own_steps_or_none() {
    let audience = Arc::new(tocsin::demo::synthetic_audience(20_000, 13));
    let in_circle = |r: f64| -> u64 {
        SubscriberKind::ALL
            .iter()
            .map(|&k| ids_where(&audience, k, |p| circle(GZ, r).contains(p)).len() as u64)
            .sum()
    };
    for (steps, radius) in [(vec![(0, 50.0)], 50.0), (vec![], 10.0)] {
        let dir = tempfile::tempdir().unwrap();
        let sinks = Sinks::new();
        let mut s = widening_settings(dir.path(), 1.0);
        s.partners.clear();
        s.authorities[0].widen = vec![tocsin::config::AuthorityWidenSettings {
            event_code: "CAE".into(),
            steps: steps
                .iter()
                .map(|&(after_minutes, radius_km)| WidenStepSettings {
                    after_minutes,
                    radius_km,
                })
                .collect(),
        }];
        let d = Daemon::start(s, sinks.extras(&audience)).await.unwrap();
        let r = submit(dir.path(), d.ingest_addr, &alert_at("own-1", GZ)).await;
        let Receipt::Accepted { targeted, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(targeted, in_circle(radius), "steps {steps:?}");
        assert!(
            wait_for(30, || d
                .dispatcher()
                .progress(1)
                .is_some_and(|p| p.is_done()))
            .await
        );
        let rec = d.journal().alert(1).unwrap().unwrap();
        match rec.expansion {
            Some(e) => assert_eq!((e.stages(), e.radius(0)), (1, 50.0)),
            None => assert!(steps.is_empty(), "no schedule without steps"),
        }
        d.shutdown().await;
    }
}

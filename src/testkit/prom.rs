//! Reading Prometheus samples and histograms out of a `/metrics` text
//! (benches and tests read the daemon's own figures this way).

/// The cumulative buckets `(le, count)` of histogram `name` in `text`,
/// from the lines whose labels contain `label` (`""` for every line),
/// sorted by bound; `+Inf` is `f64::INFINITY`.
pub fn buckets(text: &str, name: &str, label: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Where the `q`-quantile of cumulative `buckets` (as [`buckets`] returns
/// them) falls: the bucket `(lo, hi]` holding it, and the value
/// interpolated linearly inside it (`lo` when it is the `+Inf` bucket).
/// `None` without observations.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<Quantile> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let want = q * total as f64;
    let (mut lo, mut below) = (0.0, 0u64);
    for &(hi, count) in buckets {
        if count as f64 >= want {
            let value = if hi.is_infinite() {
                lo
            } else if count > below {
                lo + (hi - lo) * (want - below as f64) / (count - below) as f64
            } else {
                hi
            };
            return Some(Quantile { lo, hi, value });
        }
        (lo, below) = (hi, count);
    }
    None
}

/// The value of the sample `series` (its name and labels exactly as
/// written, e.g. `tocsin_alerts_total{result="accepted"}`) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A quantile read off a histogram ([`quantile`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantile {
    /// The bucket's lower bound (exclusive).
    pub lo: f64,
    /// The bucket's upper bound (inclusive).
    pub hi: f64,
    /// Interpolated linearly inside the bucket.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_buckets_the_daemon_writes() {
        let m = crate::metrics::Metrics::new();
        m.ingest_seconds.observe(0.0042);
        m.ingest_seconds.observe(0.2);
        let b = buckets(&m.encode(), "tocsin_ingest_seconds", "");
        let at = |le: f64| b.iter().find(|&&(l, _)| l == le).map(|&(_, n)| n);
        assert_eq!(at(0.004), Some(0));
        assert_eq!(at(0.005), Some(1));
        assert_eq!(at(f64::INFINITY), Some(2));
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        let q = quantile(&b, 0.5).unwrap();
        assert_eq!((q.lo, q.hi, q.value), (0.004, 0.005, 0.005));
        assert_eq!(quantile(&b, 0.99).unwrap().hi, 0.25);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_one_sample_by_its_exact_series() {
        let m = crate::metrics::Metrics::new();
        m.alert_result("accepted");
        m.ingest_stages.plan.observe(0.001);
        let text = m.encode();
        assert_eq!(
            sample(&text, "tocsin_alerts_total{result=\"accepted\"}"),
            Some(1.0)
        );
        let plan = "tocsin_ingest_stage_seconds_count{stage=\"plan\"}";
        assert_eq!(sample(&text, plan), Some(1.0));
        assert_eq!(sample(&text, "tocsin_alerts_total{result=\"acc\"}"), None);
    }
}

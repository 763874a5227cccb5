//! Reading Prometheus histograms out of a `/metrics` text (benches and
//! load tests read the daemon's own figures this way).

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
    }
}

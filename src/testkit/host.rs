//! Readings of the machine itself, apart from the code under test, for
//! load tests to print beside their latencies: how late a sleeping thread
//! wakes on the idle machine (the floor a virtual machine's host puts
//! under every wake-up), and the steal and idle time over a window.
//!
//! A receipt waits for several wake-ups in series (the ingest thread on
//! the packet, the journal thread on the alert and again on the `fsync`,
//! the client on the receipt), each as late as the host makes it, so a
//! receipt-latency figure means little without the host's own.

use std::time::{Duration, Instant};

/// How late one thread's sleeps woke.
#[derive(Debug, Clone)]
pub struct WakeLateness {
    /// Each sleep's lateness (woken − asked), sorted.
    late: Vec<Duration>,
}

impl WakeLateness {
    /// Sleep `period` again and again for `total`, recording how late each
    /// wake-up came. Blocks the calling thread for `total`; run it while the
    /// machine is otherwise idle to read the host's floor.
    pub fn measure(total: Duration, period: Duration) -> Self {
        let end = Instant::now() + total;
        let mut late = Vec::with_capacity((total.as_micros() / period.as_micros().max(1)) as usize);
        while Instant::now() < end {
            let t = Instant::now();
            std::thread::sleep(period);
            late.push(t.elapsed().saturating_sub(period));
        }
        late.sort();
        Self { late }
    }

    /// How many sleeps were measured.
    pub fn samples(&self) -> usize {
        self.late.len()
    }

    /// The share (0–1) of wake-ups later than `bound`.
    pub fn share_over(&self, bound: Duration) -> f64 {
        let over = self.late.len() - self.late.partition_point(|&l| l <= bound);
        over as f64 / self.late.len().max(1) as f64
    }

    /// The latest wake-up.
    pub fn worst(&self) -> Duration {
        self.late.last().copied().unwrap_or_default()
    }

    /// The `q`-quantile of the sum of `k` wake-ups drawn at random from
    /// these (a deterministic draw of 100,000 sums): what `k` wake-ups in
    /// series cost at that quantile if each is as late as the host made
    /// these, with no work and no other thread in the way.
    pub fn serial_quantile(&self, k: usize, q: f64) -> Duration {
        const DRAWS: usize = 100_000;
        if self.late.is_empty() {
            return Duration::ZERO;
        }
        // xorshift64: any fixed sequence will do; the draw needs no quality
        // beyond covering the samples evenly.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = self.late.len() as u64;
        let mut sums: Vec<Duration> = (0..DRAWS)
            .map(|_| (0..k).map(|_| self.late[(next() % n) as usize]).sum())
            .collect();
        sums.sort_unstable();
        let i = ((DRAWS as f64 * q).ceil() as usize).clamp(1, DRAWS) - 1;
        sums[i]
    }
}

impl std::fmt::Display for WakeLateness {
    /// "4,812 sleeps of 1 ms, late by > 1 ms 3.0 %, > 2 ms 1.4 %,
    /// > 5 ms 0.24 %, worst 17.9 ms"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |ms: u64| 100.0 * self.share_over(Duration::from_millis(ms));
        write!(
            f,
            "{} sleeps, late by > 1 ms {:.2} %, > 2 ms {:.2} %, > 5 ms {:.2} %, worst {:.1} ms",
            self.samples(),
            pct(1),
            pct(2),
            pct(5),
            self.worst().as_secs_f64() * 1e3
        )
    }
}

/// The machine's CPU times so far: `/proc/stat`'s first line (user, nice,
/// system, idle, iowait, irq, softirq, steal, in clock ticks).
#[derive(Debug, Clone)]
pub struct CpuTimes(Vec<u64>);

impl CpuTimes {
    /// Read them; `None` without procfs.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let v: Option<Vec<u64>> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().ok())
            .collect();
        v.map(Self)
    }

    /// Steal (time the hypervisor gave the virtual CPUs to others) and idle
    /// time since `before`, as shares of all: a window with much steal, or
    /// no idle left, says its latencies measure the host.
    pub fn share_since(&self, before: &CpuTimes) -> String {
        let d: Vec<u64> = self
            .0
            .iter()
            .zip(&before.0)
            .map(|(x, y)| x.saturating_sub(*y))
            .collect();
        let all: u64 = d.iter().sum();
        let share = |i: usize| 100.0 * d.get(i).copied().unwrap_or(0) as f64 / all.max(1) as f64;
        format!("steal {:.1} %, idle {:.1} %", share(7), share(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ms: &[u64]) -> WakeLateness {
        let mut late: Vec<Duration> = ms.iter().map(|&m| Duration::from_millis(m)).collect();
        late.sort();
        WakeLateness { late }
    }

    #[test]
    fn shares_count_only_wakeups_past_the_bound() {
        let w = of(&[0, 0, 1, 2, 6]);
        assert_eq!(w.share_over(Duration::from_millis(1)), 0.4);
        assert_eq!(w.share_over(Duration::from_millis(5)), 0.2);
        assert_eq!(w.worst(), Duration::from_millis(6));
        assert_eq!(
            w.to_string(),
            "5 sleeps, late by > 1 ms 40.00 %, > 2 ms 20.00 %, > 5 ms 20.00 %, worst 6.0 ms"
        );
    }

    #[test]
    fn serial_quantile_sums_draws() {
        // All equal: any k draws sum to k times the one value.
        assert_eq!(
            of(&[2, 2, 2]).serial_quantile(4, 0.99),
            Duration::from_millis(8)
        );
        // One in a hundred late by 10 ms, four in series: about 3.9 % of
        // sums hold one, so the p99 sum holds it and the p90 does not.
        let mut ms = vec![0; 99];
        ms.push(10);
        let w = of(&ms);
        assert_eq!(w.serial_quantile(4, 0.99), Duration::from_millis(10));
        assert_eq!(w.serial_quantile(4, 0.90), Duration::ZERO);
        assert_eq!(of(&[]).serial_quantile(4, 0.99), Duration::ZERO);
    }

    #[test]
    fn measures_real_sleeps() {
        let w = WakeLateness::measure(Duration::from_millis(30), Duration::from_millis(1));
        assert!(w.samples() >= 1 && w.samples() <= 30, "{}", w.samples());
    }

    #[test]
    fn cpu_shares_of_a_window() {
        let before = CpuTimes(vec![0, 0, 0, 0, 0, 0, 0, 0]);
        let after = CpuTimes(vec![50, 0, 10, 30, 0, 0, 0, 10]);
        assert_eq!(after.share_since(&before), "steal 10.0 %, idle 30.0 %");
        assert!(CpuTimes::read().is_some(), "this test needs /proc/stat");
    }
}

//! Samples and their summaries.

use std::time::Duration;

/// Timings of one competitor at one gateway count, in milliseconds, in round order.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    /// The largest peak RSS seen (KiB), for process competitors.
    pub maxrss_kb: Option<u64>,
    /// Processes started per run, when known.
    pub processes: Option<usize>,
}

impl Samples {
    /// Adds one run: its wall time, its CPU time when known, its peak RSS when known.
    pub fn push(&mut self, d: Duration, cpu: Option<Duration>, maxrss_kb: Option<u64>) {
        self.ms.push(d.as_secs_f64() * 1e3);
        if let Some(c) = cpu {
            self.cpu_ms.push(c.as_secs_f64() * 1e3);
        }
        if let Some(kb) = maxrss_kb {
            self.maxrss_kb = Some(self.maxrss_kb.map_or(kb, |m| m.max(kb)));
        }
    }

    /// The `q` quantile (0..=1) of the wall times; `None` without runs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.ms, q)
    }

    /// The median wall time in ms.
    pub fn median(&self) -> Option<f64> {
        self.quantile(0.5)
    }

    /// The median CPU time in ms, when it was measured in every run.
    pub fn cpu_median(&self) -> Option<f64> {
        (self.cpu_ms.len() == self.ms.len())
            .then(|| quantile(&self.cpu_ms, 0.5))
            .flatten()
    }

    /// The median of the per-round differences `self - other` (runs paired by round).
    pub fn paired_median_diff(&self, other: &Samples) -> Option<f64> {
        let d: Vec<f64> = self.ms.iter().zip(&other.ms).map(|(a, b)| a - b).collect();
        (self.ms.len() == other.ms.len())
            .then(|| quantile(&d, 0.5))
            .flatten()
    }
}

/// The `q` quantile (0..=1) of `values`, linear between neighbours; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// A millisecond value for a table: 3 significant digits.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// A ratio for a table.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quartiles() {
        let mut s = Samples::default();
        for ms in [5u64, 1, 3, 2, 4] {
            s.push(
                Duration::from_millis(ms),
                Some(Duration::from_millis(ms / 2)),
                Some(ms * 100),
            );
        }
        assert_eq!(s.median(), Some(3.0));
        assert_eq!(s.quantile(0.25), Some(2.0));
        assert_eq!(s.maxrss_kb, Some(500));
        assert_eq!(s.cpu_median(), Some(1.0));
        let mut t = Samples::default();
        for ms in [4u64, 1, 1, 1, 9] {
            t.push(Duration::from_millis(ms), None, None);
        }
        assert_eq!(t.cpu_median(), None);
        // Pairs: 5-4, 1-1, 3-1, 2-1, 4-9 = 1, 0, 2, 1, -5.
        assert_eq!(s.paired_median_diff(&t), Some(1.0));
        assert_eq!(Samples::default().median(), None);
    }
}

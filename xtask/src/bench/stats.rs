//! Samples and their summaries.

use std::time::Duration;

/// Timings of one competitor at one gateway count, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ms: Vec<f64>,
    /// The largest peak RSS seen (KiB), for process competitors.
    pub maxrss_kb: Option<u64>,
    /// Processes started per run, when known.
    pub processes: Option<usize>,
}

impl Samples {
    /// Adds one run.
    pub fn push(&mut self, d: Duration, maxrss_kb: Option<u64>) {
        self.ms.push(d.as_secs_f64() * 1e3);
        if let Some(kb) = maxrss_kb {
            self.maxrss_kb = Some(self.maxrss_kb.map_or(kb, |m| m.max(kb)));
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The `q` quantile (0..=1), linear between neighbours; `None` without runs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
    }

    /// The median in ms.
    pub fn median(&self) -> Option<f64> {
        self.quantile(0.5)
    }
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
            s.push(Duration::from_millis(ms), Some(ms * 100));
        }
        assert_eq!(s.median(), Some(3.0));
        assert_eq!(s.quantile(0.25), Some(2.0));
        assert_eq!(s.maxrss_kb, Some(500));
        assert_eq!(Samples::default().median(), None);
    }
}

//! Percentiles, medians and the optional SVG latency histogram.

use std::fmt::Write as _;

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    pub fn sorted(mut self) -> Sorted {
        self.0.sort_unstable();
        Sorted(self.0)
    }
}

/// Sorted samples (nanoseconds).
pub struct Sorted(pub Vec<u64>);

impl Sorted {
    /// Nearest-rank percentile, in milliseconds (`p` in 0..=100). NaN when empty.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1e6
    }

    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().map(|&v| v as f64).sum::<f64>() / self.0.len() as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.0.last().map_or(f64::NAN, |&v| v as f64 / 1e6)
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A histogram of `samples` on a logarithmic time axis, with the p50 / p99 / p99.9 marked.
pub fn svg_histogram(title: &str, samples: &Sorted) -> String {
    const W: f64 = 800.0;
    const H: f64 = 360.0;
    const L: f64 = 60.0; // left margin
    const B: f64 = 50.0; // bottom margin
    const T: f64 = 40.0; // top margin
    const R: f64 = 20.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{W}" height="{H}" fill="white"/><text x="{L}" y="24" font-size="15">{}</text>"#, escape(title));
    if samples.0.is_empty() {
        svg.push_str("</svg>\n");
        return svg;
    }
    let min_ns = (*samples.0.first().unwrap()).max(1) as f64;
    let max_ns = (*samples.0.last().unwrap()).max(2) as f64;
    let (lo, hi) = (min_ns.log10().floor(), max_ns.log10().ceil().max(min_ns.log10().floor() + 1.0));
    const BINS: usize = 120;
    let mut counts = [0u64; BINS];
    for &v in &samples.0 {
        let x = ((v.max(1) as f64).log10() - lo) / (hi - lo);
        counts[((x * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap() as f64;
    let (pw, ph) = (W - L - R, H - T - B);
    let bw = pw / BINS as f64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        // Square-root scale so the tail stays visible next to the peak.
        let h = (c as f64 / top).sqrt() * ph;
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7bd0"/>"##,
            L + i as f64 * bw,
            T + ph - h,
            bw.max(1.0),
            h
        );
    }
    let _ = write!(svg, r#"<line x1="{L}" y1="{y}" x2="{x2}" y2="{y}" stroke="black"/>"#, y = T + ph, x2 = L + pw);
    let mut decade = lo;
    while decade <= hi {
        let x = L + (decade - lo) / (hi - lo) * pw;
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y2}" stroke="black"/><text x="{x:.1}" y="{ty}" text-anchor="middle">{}</text>"#,
            label_ns(10f64.powf(decade)),
            y1 = T + ph,
            y2 = T + ph + 5.0,
            ty = T + ph + 20.0
        );
        decade += 1.0;
    }
    for (name, p, colour) in [("p50", 50.0, "#2a9d3a"), ("p99", 99.0, "#e08a00"), ("p99.9", 99.9, "#c0392b")] {
        let v = samples.pct_ms(p) * 1e6;
        let x = L + ((v.max(1.0)).log10() - lo) / (hi - lo) * pw;
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{y2}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" fill="{colour}">{name} {}</text>"#,
            label_ns(v),
            y2 = T + ph,
            tx = x + 3.0,
            ty = T + 12.0 + 14.0 * (p as i64 % 3) as f64,
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle">latency (log scale), {} samples; bar height ∝ √count</text>"#,
        samples.0.len(),
        x = L + pw / 2.0,
        y = H - 10.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn label_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Samples((1..=100).map(|v| v * 1_000_000).collect()).sorted();
        assert_eq!(s.pct_ms(50.0), 50.0);
        assert_eq!(s.pct_ms(99.0), 99.0);
        assert_eq!(s.pct_ms(100.0), 100.0);
        assert_eq!(s.max_ms(), 100.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(svg_histogram("t", &s).contains("p99"));
    }
}

//! Line charts drawn on the server as SVG: numbers only reach the markup
//! (names go through the template, escaped), and no script runs in the
//! browser at all.

use resq_redis::web::Sample;

/// The drawing's size in SVG units.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 150.0;
/// At most this many points per line, whatever the range.
const MAX_POINTS: usize = 240;
/// Lines for queues, at most.
const QUEUE_LINES: usize = 5;

pub struct Series {
    pub name: String,
    /// `x,y x,y ...` for a polyline.
    pub points: String,
    /// The CSS class (its colour).
    pub class: &'static str,
    /// The newest value, as text.
    pub last: String,
}

pub struct Chart {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<Series>,
    pub max: String,
    pub from: String,
    pub to: String,
    pub empty: bool,
}

/// Line colours (app.css): s0 blue, s1 red, then green, orange, violet, teal.
const CLASSES: [&str; 7] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"];

/// Throughput and failures (jobs/s between samples), and queue depth.
pub fn charts(samples: &[Sample]) -> Vec<Chart> {
    let samples = thin(samples);
    let rates = |pick: fn(&Sample) -> u64| -> Vec<(u64, f64)> {
        samples
            .windows(2)
            .map(|w| {
                let dt = (w[1].at_ms.saturating_sub(w[0].at_ms)).max(1) as f64 / 1000.0;
                // A counter reset (FLUSHALL, `resq stats reset`) is not a negative rate.
                (w[1].at_ms, pick(&w[1]).saturating_sub(pick(&w[0])) as f64 / dt)
            })
            .collect()
    };
    let processed = rates(|s| s.processed);
    let failed = rates(|s| s.failed);
    let mut depth = vec![(
        "all queues".to_string(),
        CLASSES[0],
        samples.iter().map(|s| (s.at_ms, s.waiting as f64)).collect::<Vec<_>>(),
    )];
    // The queues deepest in the newest sample, each a line.
    if let Some(newest) = samples.last() {
        for (i, (queue, _)) in newest.queues.iter().take(QUEUE_LINES).enumerate() {
            let line = samples
                .iter()
                .map(|s| {
                    let n = s.queues.iter().find(|(q, _)| q == queue).map_or(0, |(_, n)| *n);
                    (s.at_ms, n as f64)
                })
                .collect();
            depth.push((queue.clone(), CLASSES[(i + 2) % CLASSES.len()], line));
        }
    }
    vec![
        chart(
            "Throughput",
            "jobs/s",
            vec![
                ("processed".into(), CLASSES[0], processed),
                ("failed".into(), CLASSES[1], failed.clone()),
            ],
        ),
        chart("Failures", "jobs/s", vec![("failed".into(), CLASSES[1], failed)]),
        chart("Queue depth", "jobs", depth),
    ]
}

/// Keeps at most MAX_POINTS samples, evenly spread, the newest always.
fn thin(samples: &[Sample]) -> Vec<Sample> {
    if samples.len() <= MAX_POINTS {
        return samples.to_vec();
    }
    let step = samples.len() as f64 / MAX_POINTS as f64;
    let mut out: Vec<Sample> = (0..MAX_POINTS)
        .map(|i| samples[(i as f64 * step) as usize].clone())
        .collect();
    if let (Some(last), Some(newest)) = (out.last_mut(), samples.last()) {
        *last = newest.clone();
    }
    out
}

/// One line: its name, its CSS class (colour) and its points.
type Line = (String, &'static str, Vec<(u64, f64)>);

fn chart(title: &'static str, unit: &'static str, lines: Vec<Line>) -> Chart {
    let all = lines.iter().flat_map(|(_, _, l)| l.iter());
    let (mut t0, mut t1, mut max) = (u64::MAX, 0u64, 0f64);
    for (t, v) in all {
        t0 = t0.min(*t);
        t1 = t1.max(*t);
        max = max.max(*v);
    }
    let empty = t1 <= t0;
    let span = t1.saturating_sub(t0).max(1) as f64;
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let series = lines
        .into_iter()
        .map(|(name, class, line)| Series {
            points: line
                .iter()
                .map(|(t, v)| {
                    let x = (t.saturating_sub(t0)) as f64 / span * WIDTH;
                    let y = HEIGHT - v / top * HEIGHT;
                    format!("{x:.1},{y:.1}")
                })
                .collect::<Vec<_>>()
                .join(" "),
            class,
            last: line.last().map(|(_, v)| number(*v)).unwrap_or_default(),
            name,
        })
        .collect();
    Chart {
        title,
        unit,
        series,
        max: number(max),
        from: if empty {
            String::new()
        } else {
            resq::UnixMs(t0).to_string()
        },
        to: if empty {
            String::new()
        } else {
            resq::UnixMs(t1).to_string()
        },
        empty,
    }
}

fn number(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, processed: u64, waiting: u64) -> Sample {
        Sample {
            at_ms,
            processed,
            failed: 0,
            waiting,
            queues: vec![("<b>q</b>".into(), waiting)],
        }
    }

    #[test]
    fn rates_come_from_deltas_and_points_stay_in_the_box() {
        let samples: Vec<Sample> = (0..1000).map(|i| s(i * 10_000, i * 500, i % 7)).collect();
        let charts = charts(&samples);
        assert_eq!(charts[0].series[0].last, "50.0");
        for chart in &charts {
            for series in &chart.series {
                assert!(series.points.split(' ').count() <= MAX_POINTS);
                for p in series.points.split(' ') {
                    let (x, y) = p.split_once(',').unwrap();
                    let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                    assert!((0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y), "{p}");
                }
            }
        }
        assert_eq!(charts[2].series[1].name, "<b>q</b>"); // the template escapes it
    }

    #[test]
    fn a_counter_reset_is_not_a_negative_rate_and_no_samples_is_empty() {
        let charts = charts(&[s(0, 1000, 0), s(10_000, 0, 0)]);
        assert_eq!(charts[0].series[0].last, "0");
        assert!(super::charts(&[])[0].empty);
    }
}

//! The sweep's chart: p50 and p99 latency against offered load, one line pair per
//! server and API, as an SVG file.
//!
//! Drawn with `plotters`, SVG backend only (no bitmap or font-file features: the SVG
//! holds text elements that the viewer renders; plotters sizes them approximately).
//! Latency is on a log scale, since past the knee it grows by orders of magnitude.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::error::LoadError;
use crate::sweep::Sweep;

const SIZE: (u32, u32) = (900, 560);
/// One colour per line pair, in the order the series first appear.
const COLOURS: [RGBColor; 4] = [
    RGBColor(200, 40, 40),
    RGBColor(40, 90, 200),
    RGBColor(230, 140, 0),
    RGBColor(30, 150, 80),
];

/// (offered rate, p50 ms, p99 ms) per `server api`.
type Series = BTreeMap<String, Vec<(f64, f64, f64)>>;

fn series(sweep: &Sweep) -> Series {
    let mut series = Series::new();
    for (_, run) in sweep.runs() {
        let ms = |us: u64| (us.max(1) as f64) / 1000.0;
        series
            .entry(format!("{} {}", run.server, run.api))
            .or_default()
            .push((
                run.offered_rate,
                ms(run.latency_us.p50),
                ms(run.latency_us.p99),
            ));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

/// Draws `sweep` to `path`, titled `title`.
pub fn draw(sweep: &Sweep, title: &str, path: &Path) -> Result<(), LoadError> {
    let series = series(sweep);
    let all = series.values().flatten();
    let max_rate = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let max_ms = all.clone().map(|p| p.2.max(p.1)).fold(1.0, f64::max);
    let min_ms = all.map(|p| p.1.min(p.2)).fold(max_ms, f64::min);
    let chart_error = |e: &dyn std::fmt::Display| LoadError::Chart(e.to_string());

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| chart_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0f64..max_rate * 1.05,
            (min_ms * 0.8..max_ms * 1.25).log_scale(),
        )
        .map_err(|e| chart_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests per second")
        .y_desc("latency, ms (log)")
        .draw()
        .map_err(|e| chart_error(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(p99.clone(), colour.stroke_width(3)))
            .map_err(|e| chart_error(&e))?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3)));
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| chart_error(&e))?;
        chart
            .draw_series(LineSeries::new(p50.clone(), colour.stroke_width(1)))
            .map_err(|e| chart_error(&e))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(1)));
        chart
            .draw_series(p50.iter().map(|&p| Circle::new(p, 3, colour)))
            .map_err(|e| chart_error(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| chart_error(&e))?;
    root.present().map_err(|e| chart_error(&e))?;
    Ok(())
}

//! SVG charts of a run's medians, drawn with plotters' SVG backend (no font or system
//! library: text is written as SVG `<text>` and the viewer renders it).
//!
//! - `throughput-<size>.svg`: per value size, each engine's ops/s as a multiple of extentdb's,
//!   one group of bars per workload (extentdb = 1, the dashed line), on a log axis.
//! - `write-amp.svg`: disk bytes written per logical byte in `fillrandom` and `overwrite`
//!   (with settling), one group per value size.
//! - `space-amp.svg`: bytes on disk per live byte after `overwrite` and its settling.
//!
//! Every y axis is logarithmic; bars rise from the bottom of the axis.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::Result;
use super::engine::EngineKind;
use super::report::{SummaryRow, size_name};
use super::workload::Workload;

/// One colour per engine, in [`EngineKind::ALL`]'s order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x98, 0xdf, 0x8a),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];

fn colour(engine: EngineKind) -> RGBColor {
    let i = EngineKind::ALL
        .iter()
        .position(|&e| e == engine)
        .unwrap_or(0);
    COLOURS.get(i).copied().unwrap_or(BLACK)
}

/// Bars in groups: `series` holds one value per group for each engine.
struct Bars<'a> {
    title: String,
    y_desc: &'a str,
    groups: Vec<String>,
    series: Vec<(EngineKind, Vec<Option<f64>>)>,
    reference: Option<f64>,
}

/// Writes every chart of `rows` into `dir` and returns their paths.
///
/// # Errors
/// An I/O or drawing error.
pub fn write_plots(rows: &[SummaryRow], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut engines: Vec<EngineKind> = rows.iter().map(|r| r.engine).collect();
    engines.sort_unstable();
    engines.dedup();
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.value_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let find = |e: EngineKind, size: usize, w: Workload| {
        rows.iter()
            .find(|r| r.engine == e && r.value_bytes == size && r.workload == w)
    };
    for &size in &sizes {
        let mut workloads: Vec<Workload> = rows
            .iter()
            .filter(|r| r.value_bytes == size)
            .map(|r| r.workload)
            .collect();
        workloads.sort_unstable();
        workloads.dedup();
        let bars = Bars {
            title: format!("ops/s relative to extentdb, {} values", size_name(size)),
            y_desc: "x extentdb (higher is faster)",
            groups: workloads.iter().map(|w| w.name().to_owned()).collect(),
            series: engines
                .iter()
                .map(|&e| {
                    let v = workloads
                        .iter()
                        .map(|&w| find(e, size, w).and_then(|r| r.ratio_to_extentdb))
                        .collect();
                    (e, v)
                })
                .collect(),
            reference: Some(1.0),
        };
        let path = dir.join(format!("throughput-{size}.svg"));
        draw(&path, &bars)?;
        written.push(path);
    }
    let per_size = |title: &str,
                    y_desc: &'static str,
                    f: &dyn Fn(&SummaryRow) -> Option<f64>,
                    w: &[Workload]| Bars {
        title: title.to_owned(),
        y_desc,
        groups: sizes
            .iter()
            .flat_map(|&s| {
                w.iter()
                    .map(move |w| format!("{} {}", w.name(), size_name(s)))
            })
            .collect(),
        series: engines
            .iter()
            .map(|&e| {
                let v = sizes
                    .iter()
                    .flat_map(|&s| w.iter().map(move |&w| (s, w)))
                    .map(|(s, w)| find(e, s, w).and_then(f))
                    .collect();
                (e, v)
            })
            .collect(),
        reference: Some(1.0),
    };
    let write_amp = per_size(
        "write amplification (fillrandom: timed window; overwrite: with settling)",
        "disk bytes written / logical bytes",
        &|r| {
            if r.workload == Workload::Overwrite {
                r.write_amp_with_settle
            } else {
                r.write_amp
            }
        },
        &[Workload::Fillrandom, Workload::Overwrite],
    );
    let space_amp = per_size(
        "space amplification after overwrite and settling",
        "bytes on disk / live bytes",
        &|r| r.space_amp,
        &[Workload::Overwrite],
    );
    for (name, bars) in [("write-amp.svg", write_amp), ("space-amp.svg", space_amp)] {
        if bars
            .series
            .iter()
            .any(|(_, v)| v.iter().any(Option::is_some))
        {
            let path = dir.join(name);
            draw(&path, &bars)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn draw(path: &Path, bars: &Bars<'_>) -> Result<()> {
    let group_px = (18 * bars.series.len() as u32).max(48);
    let width = (120 + group_px * bars.groups.len() as u32).max(640);
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let values = || {
        bars.series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
    };
    let reference = bars.reference.unwrap_or(1.0);
    // Headroom above the tallest bar keeps the legend clear of the bars.
    let top = values().fold(reference, f64::max) * 8.0;
    let bottom = values().filter(|v| *v > 0.0).fold(reference, f64::min) / 1.3;
    let groups = bars.groups.len() as f64;
    // Ratios span orders of magnitude: a log axis shows 0.1x as far below 1 as 10x is above.
    let mut chart = ChartBuilder::on(&root)
        .caption(&bars.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(130)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..groups, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(bars.y_desc)
        .draw()?;
    let n = bars.series.len().max(1) as f64;
    let slot = 0.8 / n;
    for (s, (engine, values)) in bars.series.iter().enumerate() {
        let fill = colour(*engine).filled();
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            let x0 = g as f64 + 0.1 + slot * s as f64;
            v.map(|v| Rectangle::new([(x0, bottom), (x0 + slot * 0.9, v.max(bottom))], fill))
        });
        chart
            .draw_series(rects)?
            .label(engine.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], fill));
    }
    if let Some(r) = bars.reference {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, r), (groups, r)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?;
    }
    let label = ("sans-serif", 13)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK);
    for (g, name) in bars.groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, bottom));
        // Rotated a quarter turn, the text runs upwards from its anchor: anchor it low enough
        // that its end sits just under the axis.
        let len = 7 * name.len() as i32;
        root.draw(&Text::new(
            name.clone(),
            (px - 6, py + 8 + len),
            label.clone(),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

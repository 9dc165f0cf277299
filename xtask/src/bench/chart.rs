//! `docs/bench.svg`: median apply time against gateway count, one line per competitor, both
//! axes logarithmic (IPv4 gateways).

use std::path::Path;

use plotters::prelude::*;

use super::suite::{Family, Group, Op};

/// The competitors drawn, in legend order.
const DRAWN: [Op; 10] = [
    Op::IptRules,
    Op::IptRestore,
    Op::NftStart,
    Op::NftReplace,
    Op::BinStart,
    Op::BinReplace,
    Op::LibStart,
    Op::FloorSized,
    Op::Floor0,
    Op::FloorAdd,
];

/// A line: its label, colour, dashed or not, and points (gateways, ms).
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

fn colour(op: Op) -> RGBColor {
    match op {
        Op::IptRules => RGBColor(214, 39, 40),
        Op::IptRestore => RGBColor(255, 127, 14),
        Op::NftStart => RGBColor(31, 119, 180),
        Op::NftReplace => RGBColor(23, 190, 207),
        Op::BinStart => RGBColor(44, 160, 44),
        Op::BinReplace => RGBColor(148, 103, 189),
        Op::LibStart => RGBColor(140, 86, 75),
        Op::FloorSized => RGBColor(127, 127, 127),
        Op::FloorAdd => RGBColor(188, 189, 34),
        _ => RGBColor(0, 0, 0),
    }
}

fn lines(groups: &[Group]) -> Vec<Line> {
    DRAWN
        .iter()
        .filter_map(|&op| {
            let pts: Vec<(f64, f64)> = groups
                .iter()
                .filter(|g| g.family == Family::V4)
                .filter_map(|g| {
                    g.ops
                        .get(&op)
                        .and_then(|s| s.median())
                        .map(|m| (g.n as f64, m))
                })
                .collect();
            (!pts.is_empty()).then(|| (op.label(), colour(op), pts))
        })
        .collect()
}

/// Draws the chart into `path`: the plot on top, its legend below it in two columns (so no
/// line is hidden behind it).
pub fn draw(path: &Path, groups: &[Group]) -> Result<(), String> {
    let lines = lines(groups);
    let e = |e: DrawingAreaErrorKind<std::io::Error>| format!("chart: {e}");
    let root = SVGBackend::new(path, (960, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(560);
    plot(&top, &lines).map_err(e)?;
    legend(&bottom, &lines).map_err(e)?;
    root.present().map_err(e)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Failed = DrawingAreaErrorKind<std::io::Error>;

fn plot(area: &Area<'_>, lines: &[Line]) -> Result<(), Failed> {
    let all = || lines.iter().flat_map(|(_, _, p)| p.iter());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max) * 1.6;
    let y_min = all().map(|p| p.1).fold(f64::INFINITY, f64::min).max(0.01) * 0.6;
    let y_max = all().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.8;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Apply time vs gateway count (IPv4, median; log-log)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((0.8..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("gateways")
        .y_desc("milliseconds")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .draw()?;
    for (_, colour, pts) in lines {
        let c = *colour;
        chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    Ok(())
}

fn legend(area: &Area<'_>, lines: &[Line]) -> Result<(), Failed> {
    let per_column = lines.len().div_ceil(2).max(1);
    for (i, (label, colour, _)) in lines.iter().enumerate() {
        let x = 90 + 440 * (i / per_column) as i32;
        let y = 12 + 22 * (i % per_column) as i32;
        area.draw(&PathElement::new(
            vec![(x, y), (x + 28, y)],
            colour.stroke_width(3),
        ))?;
        area.draw(&Circle::new((x + 14, y), 4, colour.filled()))?;
        area.draw(&Text::new(*label, (x + 38, y - 8), ("sans-serif", 15)))?;
    }
    Ok(())
}

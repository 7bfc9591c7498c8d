//! SVG plots of the recorded data, drawn with plotters.

use std::io;
use std::path::Path;

use plotters::prelude::*;

const SIZE: (u32, u32) = (760, 440);
/// Text sizes that stay readable when the book's column (750 px) shows a
/// plot at its own width.
const TICKS: (&str, u32) = ("sans-serif", 15);
const AXES: (&str, u32) = ("sans-serif", 16);
const LEGEND: (&str, u32) = ("sans-serif", 15);
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn failed(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("plot: {error}"))
}

/// One bar per `(name, value)`.
pub fn bars(path: &Path, title: &str, bars: &[(String, f64)]) -> io::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let top = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max) * 1.15;
    // An integer range is inclusive for plotters: 0..n has n + 1 values, so
    // n bars need 0..n - 1, or a last, empty slot is drawn.
    let last = bars.len().saturating_sub(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..top)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .label_style(TICKS)
        .axis_desc_style(AXES)
        .disable_x_mesh()
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or(String::new(), |(n, _)| n.clone()),
            _ => String::new(),
        })
        .draw()
        .map_err(failed)?;
    for (i, (_, value)) in bars.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (
                    if i < last {
                        SegmentValue::Exact(i + 1)
                    } else {
                        SegmentValue::Last
                    },
                    *value,
                ),
            ],
            colour.mix(0.8).filled(),
        );
        // A gap between neighbours.
        bar.set_margin(0, 0, 12, 12);
        chart.draw_series(std::iter::once(bar)).map_err(failed)?;
    }
    root.present().map_err(failed)
}

/// Lines over linear axes.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> io::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    lines_on(&root, title, x_label, y_label, series)?;
    root.present().map_err(failed)
}

/// One panel of lines over linear axes.
#[derive(Debug)]
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Panels of lines one above the other, in a picture as wide as the others
/// (side by side, they would be shrunk to half their size in the book's
/// column).
pub fn panels(path: &Path, panels: &[Panel]) -> io::Result<()> {
    let size = (SIZE.0, SIZE.1 * panels.len().max(1) as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        lines_on(
            area,
            panel.title,
            panel.x_label,
            panel.y_label,
            &panel.series,
        )?;
    }
    root.present().map_err(failed)
}

fn lines_on(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> io::Result<()> {
    let (x_max, y_max) = extent(series);
    // Room above the curves for the legend, a line for each of them.
    let headroom = 1.05 + 0.08 * series.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * headroom)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .label_style(TICKS)
        .axis_desc_style(AXES)
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(failed)?;
    // The curves rise to the right: the upper left is where they are not.
    draw_lines(&mut chart, series, SeriesLabelPosition::UpperLeft)
}

/// Lines over logarithmic axes, for values that span orders of magnitude.
pub fn lines_log_log(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> io::Result<()> {
    let (x_max, y_max) = extent(series);
    let points = || series.iter().flat_map(|(_, points)| points.iter());
    let x_min = points().map(|(x, _)| *x).fold(f64::INFINITY, f64::min);
    let y_min = points().map(|(_, y)| *y).fold(f64::INFINITY, f64::min);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_min * 0.8..x_max * 1.25).log_scale(),
            (y_min * 0.5..y_max * 2.0).log_scale(),
        )
        .map_err(failed)?;
    chart
        .configure_mesh()
        .label_style(TICKS)
        .axis_desc_style(AXES)
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(failed)?;
    draw_lines(&mut chart, series, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(failed)
}

fn extent(series: &[(String, Vec<(f64, f64)>)]) -> (f64, f64) {
    let points = series.iter().flat_map(|(_, points)| points.iter());
    points.fold((0.0f64, 0.0f64), |(x, y), (px, py)| {
        (x.max(*px), y.max(*py))
    })
}

fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[(String, Vec<(f64, f64)>)],
    legend: SeriesLabelPosition,
) -> io::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(failed)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font(LEGEND)
        .position(legend)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(failed)
}

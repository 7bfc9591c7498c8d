//! Just enough SVG for the book's diagrams: boxes, text, lines and arrows,
//! written as plain text so that the output is the same byte for byte on
//! every run.
//!
//! The book has a light and a dark theme, and an SVG shown with `<img>` sees
//! neither (`currentColor` is black there). So nothing here is drawn in
//! black or white on the page itself: free text and lines are a mid grey
//! that reads on white and on near-black alike, and dark text appears only
//! inside a box with a mid-tone fill of its own.

use std::fmt::Write as _;

/// Lines, arrows and text drawn straight on the page.
pub const INK: &str = "#808080";
/// Text inside a filled box.
pub const DARK: &str = "#1b1b1b";
pub const BLUE: &str = "#7fa7d9";
pub const GREEN: &str = "#86c48a";
pub const ORANGE: &str = "#eba75c";
pub const PURPLE: &str = "#b79fe0";
pub const GREY: &str = "#b4b4b4";
pub const AMBER: &str = "#f0c05a";

/// A number as SVG wants it: at most one decimal, no trailing `.0`.
fn n(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where a text's `x` is: its start or its middle.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
}

/// How a piece of text looks.
#[derive(Debug, Clone, Copy)]
pub struct Font {
    pub size: f64,
    pub color: &'static str,
    pub anchor: Anchor,
    pub bold: bool,
    pub mono: bool,
}

impl Font {
    /// Text on the page: grey, so that it reads in both themes.
    pub const fn page(size: f64) -> Font {
        Font {
            size,
            color: INK,
            anchor: Anchor::Start,
            bold: true,
            mono: false,
        }
    }

    /// Text inside a filled box.
    pub const fn boxed(size: f64) -> Font {
        Font {
            size,
            color: DARK,
            anchor: Anchor::Middle,
            bold: false,
            mono: false,
        }
    }

    pub const fn anchor(self, anchor: Anchor) -> Font {
        Font { anchor, ..self }
    }

    pub const fn middle(self) -> Font {
        self.anchor(Anchor::Middle)
    }

    pub const fn bold(self, bold: bool) -> Font {
        Font { bold, ..self }
    }

    pub const fn mono(self) -> Font {
        Font { mono: true, ..self }
    }
}

/// How a box looks: its fill (`None`: outline only) and its outline.
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    pub fill: Option<&'static str>,
    pub stroke: Option<&'static str>,
    pub dashed: bool,
    pub radius: f64,
}

impl Fill {
    pub const fn solid(color: &'static str) -> Fill {
        Fill {
            fill: Some(color),
            stroke: None,
            dashed: false,
            radius: 4.0,
        }
    }

    pub const fn outline(color: &'static str) -> Fill {
        Fill {
            fill: None,
            stroke: Some(color),
            dashed: false,
            radius: 4.0,
        }
    }

    pub const fn dashed(self) -> Fill {
        Fill {
            dashed: true,
            ..self
        }
    }

    pub const fn radius(self, radius: f64) -> Fill {
        Fill { radius, ..self }
    }
}

/// One picture being drawn.
#[derive(Debug)]
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        Svg {
            width,
            height,
            body: String::new(),
        }
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Fill) {
        let _ = write!(
            self.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" rx="{}" fill="{}""#,
            n(x),
            n(y),
            n(w),
            n(h),
            n(fill.radius),
            fill.fill.unwrap_or("none"),
        );
        if let Some(stroke) = fill.stroke {
            let _ = write!(self.body, r#" stroke="{stroke}" stroke-width="1.5""#);
        }
        if fill.dashed {
            self.body.push_str(r#" stroke-dasharray="5 3""#);
        }
        self.body.push_str("/>\n");
    }

    /// One line of text; `y` is its baseline.
    pub fn text(&mut self, x: f64, y: f64, text: &str, font: Font) {
        let anchor = match font.anchor {
            Anchor::Start => "",
            Anchor::Middle => r#" text-anchor="middle""#,
        };
        let weight = if font.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let family = if font.mono {
            r#" font-family="monospace""#
        } else {
            ""
        };
        let _ = writeln!(
            self.body,
            r#"<text x="{}" y="{}" font-size="{}" fill="{}"{anchor}{weight}{family}>{}</text>"#,
            n(x),
            n(y),
            n(font.size),
            font.color,
            escape(text)
        );
    }

    /// A box (`x`, `y`, width, height) with one line of text in its middle.
    pub fn label(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        fill: Fill,
        text: &str,
        font: Font,
    ) {
        self.rect(x, y, w, h, fill);
        let font = font.middle();
        self.text(x + w / 2.0, y + h / 2.0 + font.size * 0.35, text, font);
    }

    /// Several lines of text, one under the other; `y` is the first baseline.
    pub fn lines(&mut self, x: f64, y: f64, lines: &[&str], font: Font) {
        for (i, line) in lines.iter().enumerate() {
            self.text(x, y + i as f64 * font.size * 1.3, line, font);
        }
    }

    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), color: &str, dashed: bool) {
        self.polyline(&[from, to], color, dashed);
    }

    fn polyline(&mut self, points: &[(f64, f64)], color: &str, dashed: bool) {
        let points: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{},{}", n(x), n(y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            points.join(" ")
        );
    }

    /// A line through `points` with an arrowhead at the last one.
    pub fn arrow(&mut self, points: &[(f64, f64)], color: &str, dashed: bool) {
        let [.., (x1, y1), (x2, y2)] = points else {
            return;
        };
        let (dx, dy) = (x2 - x1, y2 - y1);
        let length = dx.hypot(dy);
        if length == 0.0 {
            return;
        }
        let (ux, uy) = (dx / length, dy / length);
        // Stop the line where the head begins, so that its end is sharp.
        let (bx, by) = (x2 - ux * 10.0, y2 - uy * 10.0);
        let mut line = points.to_vec();
        if let Some(last) = line.last_mut() {
            *last = (bx, by);
        }
        self.polyline(&line, color, dashed);
        let left = (bx - uy * 5.0, by + ux * 5.0);
        let right = (bx + uy * 5.0, by - ux * 5.0);
        let _ = writeln!(
            self.body,
            r#"<polygon points="{},{} {},{} {},{}" fill="{color}"/>"#,
            n(*x2),
            n(*y2),
            n(left.0),
            n(left.1),
            n(right.0),
            n(right.1)
        );
    }

    /// The whole document. `title` and `description` are for screen
    /// readers and for anyone who opens the file alone; the page gives the
    /// image its own alt text.
    pub fn finish(self, title: &str, description: &str) -> String {
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" "#,
                r#"font-family="sans-serif" role="img">"#,
                "\n<title>{title}</title>\n<desc>{description}</desc>\n",
                "<!-- Generated by scripts/pictures (scripts/book generate); do not edit. -->\n",
                "{body}</svg>\n"
            ),
            w = n(self.width),
            h = n(self.height),
            title = escape(title),
            description = escape(description),
            body = self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_fixed() {
        assert_eq!(n(12.0), "12");
        assert_eq!(n(12.26), "12.3");
        assert_eq!(n(-0.5), "-0.5");
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(10.0, 10.0);
        svg.text(0.0, 0.0, "a < b & c", Font::page(12.0));
        assert!(svg.finish("t", "d").contains("a &lt; b &amp; c"));
    }
}

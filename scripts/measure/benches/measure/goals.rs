//! The goals: what each measurement is asked to show, and what the data
//! decided. A goal on a ratio from noisy, repeated runs is decided by the
//! ratio's confidence interval, not by its median alone, so that noise
//! cannot pass or fail it: met when the whole interval is on the goal's
//! side of the bound, missed when the whole interval is on the other side,
//! and a tie when the interval holds the bound (the data cannot tell).

use std::fs;
use std::io;
use std::path::Path;

use measure::stats::Summary;

use crate::output::{self, ratio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Tie,
    Missed,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Tie => "tie",
            Verdict::Missed => "missed",
        }
    }

    /// Also reads `true` and `false`, which `goals.csv` held before ties.
    fn parse(word: &str) -> Verdict {
        match word {
            "met" | "true" => Verdict::Met,
            "tie" => Verdict::Tie,
            _ => Verdict::Missed,
        }
    }
}

/// Which side of a bound a goal wants.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    AtMost(f64),
    AtLeast(f64),
}

impl Want {
    /// "at most 0.9x", "at least 1.0x"; with `unit` "", "at most 16".
    pub fn text(self, unit: &str) -> String {
        let bound = |x: f64| {
            if unit.is_empty() {
                short(x)
            } else {
                format!("{}{unit}", short_ratio(x))
            }
        };
        match self {
            Want::AtMost(x) => format!("at most {}", bound(x)),
            Want::AtLeast(x) => format!("at least {}", bound(x)),
        }
    }

    /// The verdict on a value known to lie between `low` and `high`.
    pub fn decide(self, low: f64, high: f64) -> Verdict {
        let (good, bad) = match self {
            Want::AtMost(bound) => (high <= bound, low > bound),
            Want::AtLeast(bound) => (low >= bound, high < bound),
        };
        match (good, bad) {
            (true, _) => Verdict::Met,
            (_, true) => Verdict::Missed,
            _ => Verdict::Tie,
        }
    }
}

/// A count without trailing zeros: 16, 2.5.
fn short(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A ratio with at least one decimal: 1.0, 0.9, 0.95.
fn short_ratio(x: f64) -> String {
    let text = format!("{x:.2}");
    match text.strip_suffix('0') {
        Some(one_decimal) => one_decimal.to_string(),
        None => text,
    }
}

/// One goal, measured.
#[derive(Debug, Clone)]
pub struct Goal {
    /// Which measurement checks it: `dispatch`, `idle`, ...
    pub measurement: &'static str,
    pub name: String,
    pub wanted: String,
    pub measured: String,
    pub verdict: Verdict,
}

impl Goal {
    /// A goal on one ratio, taken once or from medians: decided by its
    /// value alone.
    pub fn exact(measurement: &'static str, name: String, want: Want, value: f64) -> Goal {
        Goal {
            measurement,
            name,
            wanted: want.text("x"),
            measured: ratio(value),
            verdict: want.decide(value, value),
        }
    }

    /// A goal on the ratio of two counts per response, which do not vary
    /// from run to run. Both counts are shown: a ratio rounded to 1.000x
    /// can hide one call in a thousand requests.
    pub fn counts(
        measurement: &'static str,
        name: String,
        want: Want,
        ours: f64,
        theirs: f64,
    ) -> Goal {
        let value = ours / theirs;
        Goal {
            measurement,
            name,
            wanted: want.text("x"),
            measured: format!("{} ({ours:.3} against {theirs:.3})", ratio(value)),
            verdict: want.decide(value, value),
        }
    }

    /// A goal on a count that does not vary from run to run.
    pub fn count(measurement: &'static str, name: String, want: Want, value: f64) -> Goal {
        Goal {
            measurement,
            name,
            wanted: want.text(""),
            measured: format!("{value:.1}"),
            verdict: want.decide(value, value),
        }
    }

    /// A goal on the median of repeated ratios, decided by its interval.
    pub fn interval(measurement: &'static str, name: String, want: Want, s: &Summary) -> Goal {
        let (low, high) = s.interval;
        Goal {
            measurement,
            name,
            wanted: want.text("x"),
            measured: format!(
                "{} ({:.0}% interval {} to {}; {} pairs)",
                ratio(s.median),
                s.confidence * 100.0,
                ratio(low),
                ratio(high),
                s.count
            ),
            verdict: want.decide(low, high),
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (wanted {}): {}",
            self.name,
            self.measured,
            self.wanted,
            self.verdict.word()
        )
    }
}

/// Writes the goals of this run to `goals.csv` and `goals.md`, keeping
/// those of measurements that were not run this time (`--only`).
pub fn write(dir: &Path, ran: &[String], goals: &[Goal]) -> io::Result<()> {
    let header = "measurement,goal,wanted,measured,met";
    let kept: Vec<String> = fs::read_to_string(dir.join("goals.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let measurement = line.split(',').next().unwrap_or_default();
            !ran.iter().any(|name| name == measurement)
        })
        .map(str::to_string)
        .collect();
    let mut rows = kept;
    // Plain CSV: a comma in a text would shift the columns.
    let field = |text: &str| text.replace(',', ";");
    rows.extend(goals.iter().map(|goal| {
        format!(
            "{},{},{},{},{}",
            goal.measurement,
            field(&goal.name),
            field(&goal.wanted),
            field(&goal.measured),
            goal.verdict.word()
        )
    }));
    let order = |row: &String| {
        let measurement = row.split(',').next().unwrap_or_default();
        crate::ALL.iter().position(|name| *name == measurement)
    };
    rows.sort_by_key(order);
    output::write_csv(dir, "goals.csv", header, &rows)?;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.split(',').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_string();
            let verdict = Verdict::parse(&field(4));
            let shown = match verdict {
                Verdict::Missed => "**missed**".to_string(),
                other => other.word().to_string(),
            };
            // The name's "dispatch: " is the measurement column's.
            let name = field(1);
            let name = name
                .split_once(": ")
                .map_or(name.as_str(), |(_, rest)| rest);
            vec![field(0), name.to_string(), field(2), field(3), shown]
        })
        .collect();
    output::write_table(
        dir,
        "goals.md",
        &output::table(
            &["measurement", "goal", "wanted", "measured", "verdict"],
            &table_rows,
        ),
    )
}

//! Writing what was measured: CSV data, Markdown tables, the machine, and
//! the goals.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

/// One goal from the issue, measured: what it asks, the ratio, and whether
/// the ratio meets it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// Which measurement checks it: `dispatch`, `idle`, ...
    pub measurement: &'static str,
    pub name: String,
    pub wanted: String,
    pub measured: String,
    pub met: bool,
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.met { "met" } else { "MISSED" };
        write!(
            f,
            "{}: {} (wanted {}): {verdict}",
            self.name, self.measured, self.wanted
        )
    }
}

/// Writes `rows` under `header` to `dir/name`, comma-separated.
pub fn write_csv(dir: &Path, name: &str, header: &str, rows: &[String]) -> io::Result<()> {
    // Plain CSV, no quoting: a comma inside a field would shift the columns.
    let columns = header.split(',').count();
    if let Some(row) = rows.iter().find(|row| row.split(',').count() != columns) {
        return Err(io::Error::other(format!(
            "{name}: this row does not have {columns} fields: {row}"
        )));
    }
    let mut text = String::from(header);
    text.push('\n');
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    fs::write(dir.join(name), text)
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut text = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        text.push_str(" --- |");
    }
    text.push('\n');
    for row in rows {
        let _ = writeln!(text, "| {} |", row.join(" | "));
    }
    text
}

pub fn write_table(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    fs::write(dir.join(name), text)
}

/// Writes the goals of this run to `goals.csv` and `goals.md`, keeping
/// those of measurements that were not run this time (`--only`).
pub fn write_goals(dir: &Path, ran: &[String], goals: &[Goal]) -> io::Result<()> {
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
    // Goal texts are ours and have no commas, so plain CSV is enough.
    rows.extend(goals.iter().map(|goal| {
        format!(
            "{},{},{},{},{}",
            goal.measurement, goal.name, goal.wanted, goal.measured, goal.met
        )
    }));
    let order = |row: &String| {
        let measurement = row.split(',').next().unwrap_or_default();
        crate::ALL.iter().position(|name| *name == measurement)
    };
    rows.sort_by_key(order);
    write_csv(dir, "goals.csv", header, &rows)?;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.split(',').collect();
            let verdict = if fields.get(4) == Some(&"true") {
                "met"
            } else {
                "**missed**"
            };
            vec![
                fields.get(1).copied().unwrap_or_default().to_string(),
                fields.get(2).copied().unwrap_or_default().to_string(),
                fields.get(3).copied().unwrap_or_default().to_string(),
                verdict.to_string(),
            ]
        })
        .collect();
    write_table(
        dir,
        "goals.md",
        &table(&["goal", "wanted", "measured", ""], &table_rows),
    )
}

/// The commit being measured. Taken before anything is written: the run
/// itself rewrites tracked files, which would make any tree look dirty.
pub fn commit() -> String {
    command_line("git", &["describe", "--always", "--dirty"])
}

/// The load averages over 1, 5 and 15 minutes: how busy the machine was.
pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// `load_at_start` is [`load`] before the first measurement.
/// The machine, date and commit the numbers were taken on.
pub fn write_machine(dir: &Path, commit: &str, load_at_start: &str) -> io::Result<()> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_default();
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(String::from("unknown"), |kib| format!("{} GiB", kib >> 20));
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M"]);
    let rustc = command_line("rustc", &["--version"]);
    let rows = vec![
        vec!["date (UTC)".to_string(), date],
        vec!["commit".to_string(), format!("`{commit}`")],
        vec!["CPU".to_string(), format!("{cpu}, {cores} cores")],
        vec!["memory".to_string(), memory],
        vec!["kernel".to_string(), format!("Linux {kernel}")],
        vec!["compiler".to_string(), rustc],
        vec![
            "load average (1, 5, 15 min)".to_string(),
            format!("{load_at_start} at the start; {} at the end", load()),
        ],
    ];
    write_table(dir, "machine.md", &table(&["", ""], &rows))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `x` as a ratio with two decimals.
pub fn ratio(x: f64) -> String {
    format!("{x:.3}x")
}

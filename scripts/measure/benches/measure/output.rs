//! Writing what was measured: CSV data and Markdown tables.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

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

/// The commit being measured. Taken before anything is written: the run
/// itself rewrites tracked files, which would make any tree look dirty.
pub fn commit() -> String {
    command_line("git", &["describe", "--always", "--dirty"])
}

/// The load average over the last minute: how busy the machine was.
pub fn load() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn command_line(program: &str, args: &[&str]) -> String {
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

//! Scale: chapter 4 completes 10,000 concurrent requests, none lost; wall
//! time and the client's peak RSS.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use d_ready_list::delay_server::DelayServer;

use crate::output::{self, Goal, ratio};

const REQUESTS: usize = 10_000;
/// Delays from 0.1 to 1,000 ms: (N - i) * 1000 ms * SCALE.
const SCALE: &str = "0.0001";

pub fn run(out: &Path, bins: &Path) -> io::Result<Vec<Goal>> {
    let program = bins.join("d-ready-list");
    if !program.exists() {
        return Err(io::Error::other(format!(
            "{} is missing: build with cargo build --release --workspace --bins",
            program.display()
        )));
    }
    let server = DelayServer::start()?;
    let requests = REQUESTS.to_string();
    let start = Instant::now();
    let mut child = Command::new(&program)
        .args(["--addr", &server.addr().to_string()])
        .args(["-n", &requests, "--scale", SCALE, "--deadline", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?
        .read_to_string(&mut stdout)?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    // wait4, not Child::wait: it also reports the child's resource usage.
    let mut status = 0;
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet waited for; status and usage
    // point at live values of the types wait4 writes.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    let wall = start.elapsed();
    drop(server);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "the client failed: {}",
            stderr.trim()
        )));
    }
    let answered: BTreeSet<usize> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("request "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let completed = answered.len();
    let peak_kib = usage.ru_maxrss as u64;
    output::write_csv(
        out,
        "scale.csv",
        "requests,completed,wall_ms,peak_rss_kib",
        &[format!(
            "{REQUESTS},{completed},{},{peak_kib}",
            wall.as_millis()
        )],
    )?;
    let text = format!(
        "{}\nChapter 4's release binary, 2 workers, delays from 0.1 to 1,000 ms, \
         against a delay server in another process.\n",
        output::table(
            &["requests", "completed", "wall time", "peak RSS"],
            &[vec![
                REQUESTS.to_string(),
                completed.to_string(),
                format!("{} ms", wall.as_millis()),
                format!("{:.1} MiB", peak_kib as f64 / 1024.0),
            ]]
        )
    );
    output::write_table(out, "scale.md", &text)?;
    print!("{text}");
    Ok(vec![Goal {
        measurement: "scale",
        name: "scale: completed / requested".into(),
        wanted: "all 10000 (1.000x)".into(),
        measured: ratio(completed as f64 / REQUESTS as f64),
        met: completed == REQUESTS,
    }])
}

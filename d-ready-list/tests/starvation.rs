//! One endless sender and a few small delayed requests, all on one worker.
//! With the ready list, every small request is answered close to its own
//! delay; with chapter 2's loop, which reads each connection until
//! `WouldBlock`, they wait behind a body that never ends.

mod support;

use std::io::{self, Write};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::client::{self, Budget, Config};
use d_ready_list::delay_server::DelayServer;
use support::PATIENCE;

// ANCHOR: bound
/// The small requests' delays, in milliseconds.
const DELAYS_MS: [u64; 4] = [100, 200, 300, 400];
/// How late past its own delay a small request may be answered.
const BOUND: Duration = Duration::from_millis(100);
// ANCHOR_END: bound

/// Sends each line the client prints down a channel, as it is printed, so
/// that the test sees responses while the run is still going.
struct Lines {
    partial: Vec<u8>,
    sender: mpsc::Sender<String>,
}

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            // The test may have stopped listening; the client need not care.
            let _ = self.sender.send(String::from_utf8_lossy(&line).into());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How late each small request was: `None` if it was not answered by the
/// time every one of them should have been.
struct Lateness(Vec<Option<Duration>>);

/// Each run keeps a core busy checksumming the endless body, and the other
/// measures lateness: two at once, on a two-core machine, would each make
/// the other late. Each run holds this for its whole length.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

// ANCHOR: run_with
/// Runs the workload with `budget` and returns how late each small request
/// was answered, giving up on them a second after the bound for the last.
fn run_with(budget: Budget) -> (Lateness, Option<client::Summary>) {
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = DelayServer::start().expect("start delay server");
    let config = Config {
        addr: server.addr(),
        paths: DELAYS_MS
            .iter()
            .enumerate()
            .map(|(i, ms)| format!("/{ms}/small-{i}"))
            .collect(),
        deadline: PATIENCE,
        workers: 1,
        hedge: false,
        endless: true,
        max_open: 0,
        budget,
    };
    let (sender, lines) = mpsc::channel();
    let (finished, outcome) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Lines {
            partial: Vec::new(),
            sender,
        };
        let _ = finished.send(client::run(&config, &mut out).ok());
    });

    let give_up = Instant::now()
        + Duration::from_millis(DELAYS_MS[DELAYS_MS.len() - 1])
        + BOUND
        + Duration::from_secs(1);
    let mut lateness = vec![None; DELAYS_MS.len()];
    while lateness.contains(&None) {
        let left = give_up.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        // "request {i} {elapsed} ms  {body}"
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["request", i, elapsed, "ms", ..] = words[..] {
            let i: usize = i.parse().expect("request number");
            let elapsed = Duration::from_millis(elapsed.parse().expect("elapsed ms"));
            lateness[i] = Some(elapsed.saturating_sub(Duration::from_millis(DELAYS_MS[i])));
        }
    }
    // Stopping the server ends the endless body, and so also a drain that
    // would otherwise never end.
    drop(server);
    let summary = outcome
        .recv_timeout(PATIENCE)
        .expect("the client stops once the endless body ends");
    (Lateness(lateness), summary)
}
// ANCHOR_END: run_with

// ANCHOR: starvation
#[test]
fn the_ready_list_answers_every_small_request_within_the_bound() {
    let (Lateness(lateness), summary) = run_with(Budget::default());
    eprintln!("ready list, lateness past each delay: {lateness:?}");
    for (i, late) in lateness.iter().enumerate() {
        let late = late.unwrap_or_else(|| panic!("request {i} was not answered"));
        assert!(late <= BOUND, "request {i} was {late:?} late");
    }
    // The endless sender kept its turns too, even while nothing else
    // happened: at least 256 KiB. A worker that blocked in its
    // wait with the endless connection still on the ready list would read
    // it only when some other event came, a handful of times in the run.
    // (Loose on purpose: a debug build on a busy machine checksums slowly.)
    let summary = summary.expect("the run succeeds");
    assert!(
        summary.stats.endless.bytes >= 256 * 1024,
        "{:?}",
        summary.stats
    );
}

#[test]
fn draining_to_would_block_starves_the_small_requests() {
    let (Lateness(lateness), _) = run_with(Budget::Drain);
    eprintln!("drain, lateness past each delay: {lateness:?}");
    let starved = lateness
        .iter()
        .filter(|late| late.is_none_or(|late| late > BOUND))
        .count();
    assert!(starved > 0, "no request waited: {lateness:?}");
}
// ANCHOR_END: starvation

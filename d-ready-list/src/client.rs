//! The program: every request on its own connection (or two, hedged), shared
//! out among worker threads that each run their own event loop
//! ([`Worker`](crate::worker::Worker)), and what it reports.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::connection::{Budget, READ_CHUNK};
pub use crate::error::{Error, Problem};
use crate::http;
use crate::poll::Waker;
pub use crate::stats::Stats;
pub use crate::worker::Completed;
use crate::worker::{WAKER, Wait, Worker};

/// What to run: where to connect, which paths to ask for, and how long the
/// whole run may take.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub paths: Vec<String>,
    pub deadline: Duration,
    /// How many threads, each with its own `Poll` and its own connections;
    /// 0 counts as 1.
    pub workers: usize,
    /// Send every request on two connections; the first answer wins.
    pub hedge: bool,
    /// Also read an endless body, and checksum it, on the first worker.
    pub endless: bool,
    /// How many connections each worker keeps open at once (a hedged
    /// request takes two); the other requests wait their turn. 0: no limit.
    pub max_open: usize,
    pub budget: Budget,
}

/// What a successful run did, in the order it happened.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub completed: Vec<Completed>,
    pub elapsed: Duration,
    /// How many threads waited for events.
    pub threads: usize,
    pub stats: Stats,
}

// ANCHOR: run
pub fn run(config: &Config, out: &mut (impl Write + Send)) -> Result<Summary, Error> {
    let start = Instant::now();
    // Every request needs a worker to own it.
    let threads = config.workers.max(1);
    let mut workers = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut worker = Worker::new(start, config.budget).map_err(Error::Poll)?;
        worker.limit_open(config.max_open);
        wakers.push(Waker::new(worker.registry(), WAKER).map_err(Error::Poll)?);
        workers.push(worker);
    }
    // A request and its twin go to the same worker: only the thread that
    // owns a connection may close it. Each worker opens its own share, on
    // its own thread and a turn's worth at a time (`Worker::open_waiting`),
    // so the connects of a big run go out in parallel, and answers are read
    // while later connects still go out.
    for (request, path) in config.paths.iter().enumerate() {
        let worker = &mut workers[request % threads];
        worker.queue(config.addr, request, path, config.hedge);
    }
    if config.endless {
        workers[0].open_endless(config.addr, config.paths.len())?;
    }

    let shared = Shared {
        config,
        start,
        wakers,
        report: Mutex::new((out, Vec::new())),
        failure: Mutex::new(None),
    };
    let finished: Vec<(Stats, Vec<(usize, String)>)> = thread::scope(|scope| {
        let threads: Vec<_> = workers
            .into_iter()
            .map(|worker| scope.spawn(|| shared.drive(worker)))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });

    let mut stats = Stats::default();
    let mut missing = Vec::new();
    for (worker_stats, worker_missing) in finished {
        stats.add(&worker_stats);
        missing.extend(worker_missing);
    }
    if let Some(mut error) = into_inner(shared.failure) {
        if let Error::Deadline { missing: names, .. } = &mut error {
            missing.sort();
            *names = missing.into_iter().map(|(_, path)| path).collect();
        }
        return Err(error);
    }
    let (out, completed) = into_inner(shared.report);
    let summary = Summary {
        completed,
        elapsed: start.elapsed(),
        threads,
        stats,
    };
    report_summary(out, &summary)?;
    Ok(summary)
}
// ANCHOR_END: run

// ANCHOR: shared
/// What the workers share: no connections, only the way out.
struct Shared<'a, W> {
    config: &'a Config,
    start: Instant,
    /// One per worker: the first failure wakes them all to stop.
    wakers: Vec<Waker>,
    /// The output and the list of responses, behind one lock: a line is
    /// printed and recorded in one step, so lines never interleave and the
    /// summary lists responses in the order they were printed.
    report: Mutex<(&'a mut W, Vec<Completed>)>,
    /// The first error ends the run.
    failure: Mutex<Option<Error>>,
}

impl<W: Write + Send> Shared<'_, W> {
    /// One worker's thread: turn its ready list and wait for more, until
    /// its own requests are answered, or the run fails. Returns what it
    /// counted, and the requests it was still waiting for.
    fn drive(&self, mut worker: Worker) -> (Stats, Vec<(usize, String)>) {
        let mut done = Vec::new();
        while worker.remaining() > 0 {
            let Some(left) = time_left(self.start, self.config) else {
                self.fail(Error::Deadline {
                    deadline: self.config.deadline,
                    missing: Vec::new(),
                });
                break;
            };
            if let Err(error) = worker.open_waiting() {
                self.fail(error);
                break;
            }
            match worker.wait(Some(left)) {
                Ok(Wait::Woken) => break,
                Ok(Wait::Ready) => {}
                Err(error) => {
                    self.fail(error);
                    break;
                }
            }
            let turn = worker.turn(&mut done);
            if let Err(error) = done.drain(..).try_for_each(|c| self.report(c)).and(turn) {
                self.fail(error);
                break;
            }
        }
        (worker.stats(), worker.missing())
    }
}
// ANCHOR_END: shared

impl<W: Write + Send> Shared<'_, W> {
    fn report(&self, completed: Completed) -> Result<(), Error> {
        let mut report_lock = lock(&self.report);
        let (out, list) = &mut *report_lock;
        report(&mut **out, &completed)?;
        list.push(completed);
        Ok(())
    }

    /// Keeps the first error and wakes every worker to stop.
    fn fail(&self, error: Error) {
        lock(&self.failure).get_or_insert(error);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

/// A lock that survives a panicked holder, whose panic the scope re-raises.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The time left before the deadline, or `None` once it has passed.
fn time_left(start: Instant, config: &Config) -> Option<Duration> {
    config
        .deadline
        .checked_sub(start.elapsed())
        .filter(|left| !left.is_zero())
}

// ANCHOR: report
fn report(out: &mut impl Write, completed: &Completed) -> Result<(), Error> {
    writeln!(
        out,
        "request {:<3} {:>6} ms  {}",
        completed.request,
        completed.elapsed.as_millis(),
        http::preview(&completed.body, 60)
    )
    .map_err(Error::Output)
}

fn report_summary(out: &mut impl Write, summary: &Summary) -> Result<(), Error> {
    let threads = if summary.threads == 1 {
        "thread"
    } else {
        "threads"
    };
    writeln!(
        out,
        "{} responses in {} ms on {} {threads}",
        summary.completed.len(),
        summary.elapsed.as_millis(),
        summary.threads
    )
    .map_err(Error::Output)?;
    let stats = &summary.stats;
    if stats.twins_closed > 0 {
        writeln!(out, "{} hedged twins closed", stats.twins_closed).map_err(Error::Output)?;
    }
    if stats.twins_failed > 0 {
        writeln!(
            out,
            "{} hedged twins failed; their twins answered",
            stats.twins_failed
        )
        .map_err(Error::Output)?;
    }
    if stats.endless.bytes > 0 {
        writeln!(
            out,
            "and beside them {} MiB of endless body checksummed",
            stats.endless.bytes >> 20
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}
// ANCHOR_END: report

//! The executor: a run queue of task ids, and a loop that polls whatever is
//! on it and waits in the reactor only when nothing is.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;

// ANCHOR: task_waker
/// Ids of the tasks that may make progress if polled.
type RunQueue = Arc<Mutex<VecDeque<usize>>>;

/// What a task's `std::task::Waker` points at. `Wake` needs `Send + Sync`,
/// because a waker may be sent to another thread, so the queue is an
/// `Arc<Mutex<_>>` even though we use it on one thread.
#[derive(Debug)]
struct TaskWaker {
    id: usize,
    run_queue: RunQueue,
    wakes: AtomicUsize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        lock(&self.run_queue).push_back(self.id);
    }
}
// ANCHOR_END: task_waker

// ANCHOR: executor
/// A task is a future pinned in a box: once polled it may hold references
/// into itself, so it must never move again.
type Task<T> = Pin<Box<dyn Future<Output = T>>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub polls: usize,
    pub wakes: usize,
}

/// What a run cost: per task, and in waits.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tasks: Vec<TaskStats>,
    pub waits: usize,
    pub events: usize,
}

pub struct Executor<T> {
    reactor: Rc<Reactor>,
    /// Indexed by task id; `None` once the task has finished.
    tasks: Vec<Option<Task<T>>>,
    wakers: Vec<Arc<TaskWaker>>,
    polls: Vec<usize>,
    run_queue: RunQueue,
}

impl<T> Executor<T> {
    pub fn new(reactor: Rc<Reactor>) -> Executor<T> {
        Executor {
            reactor,
            tasks: Vec::new(),
            wakers: Vec::new(),
            polls: Vec::new(),
            run_queue: RunQueue::default(),
        }
    }

    /// A new task has not been polled yet, so it starts on the run queue.
    pub fn spawn(&mut self, future: impl Future<Output = T> + 'static) {
        let id = self.tasks.len();
        self.tasks.push(Some(Box::pin(future)));
        self.wakers.push(Arc::new(TaskWaker {
            id,
            run_queue: Arc::clone(&self.run_queue),
            wakes: AtomicUsize::new(0),
        }));
        self.polls.push(0);
        lock(&self.run_queue).push_back(id);
    }
}
// ANCHOR_END: executor

// ANCHOR: run
impl<T> Executor<T> {
    /// Runs every task to the end, handing each output to `done` as it
    /// comes. Gives up with `TimedOut` once `deadline` has passed.
    pub fn run(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(T) -> io::Result<()>,
    ) -> io::Result<Report> {
        let start = Instant::now();
        let mut unfinished = self.tasks.iter().filter(|task| task.is_some()).count();
        while unfinished > 0 {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                let secs = deadline.as_secs_f64();
                let message = format!("gave up after {secs} s, {unfinished} task(s) unfinished");
                return Err(io::Error::new(io::ErrorKind::TimedOut, message));
            }
            let next = lock(&self.run_queue).pop_front();
            let Some(id) = next else {
                // Nothing can make progress until the kernel says so.
                self.reactor.wait(Some(left))?;
                continue;
            };
            // A task can be woken after it finished; that wake is stale.
            let Some(task) = self.tasks[id].as_mut() else {
                continue;
            };
            self.polls[id] += 1;
            let waker = Waker::from(Arc::clone(&self.wakers[id]));
            if let Poll::Ready(output) = task.as_mut().poll(&mut Context::from_waker(&waker)) {
                self.tasks[id] = None;
                unfinished -= 1;
                done(output)?;
            }
        }
        Ok(self.report())
    }

    fn report(&self) -> Report {
        let stats = self.polls.iter().zip(&self.wakers);
        Report {
            tasks: stats
                .map(|(&polls, waker)| TaskStats {
                    polls,
                    wakes: waker.wakes.load(Ordering::Relaxed),
                })
                .collect(),
            waits: self.reactor.waits.get(),
            events: self.reactor.events_seen.get(),
        }
    }
}
// ANCHOR_END: run

/// Nothing panics while holding the lock, but if it did, the queue of ids
/// would still be sound.
fn lock(queue: &RunQueue) -> MutexGuard<'_, VecDeque<usize>> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! The executor: a run queue of task ids, and a loop that polls whatever is
//! on it and turns the reactor in between, sleeping in epoll only when
//! nothing is runnable.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use crate::reactor::Reactor;
use crate::trace::Stats;
use crate::unpark::Unpark;

// ANCHOR: task_waker
/// Ids of the tasks that may make progress if polled.
type RunQueue = Arc<Mutex<VecDeque<usize>>>;

/// What a task's `std::task::Waker` points at. `Waker::from` needs it to
/// be `Send + Sync`, because a waker may be sent to another thread and
/// woken there: so the
/// queue is behind a lock, and the wake ends with the unpark.
#[derive(Debug)]
struct TaskWaker {
    id: usize,
    /// On the run queue now: a task is queued at most once, however many
    /// wakes it gets before its next poll (tokio's NOTIFIED bit).
    queued: AtomicBool,
    run_queue: RunQueue,
    unpark: Arc<Unpark>,
    wakes: AtomicUsize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.run_queue).push_back(self.id);
        self.unpark.unpark();
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

/// What a run cost: per task, in the reactor's waits, and in eventfd writes.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tasks: Vec<TaskStats>,
    pub reactor: Stats,
    pub eventfd_writes: usize,
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
    pub fn spawn(&mut self, future: impl Future<Output = T> + 'static) -> usize {
        let id = self.tasks.len();
        self.tasks.push(Some(Box::pin(future)));
        self.wakers.push(Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            run_queue: Arc::clone(&self.run_queue),
            unpark: self.reactor.unpark(),
            wakes: AtomicUsize::new(0),
        }));
        self.polls.push(0);
        lock(&self.run_queue).push_back(id);
        id
    }
}
// ANCHOR_END: executor

// ANCHOR: run
impl<T> Executor<T> {
    /// Runs every task to the end, handing each output to `done` as it
    /// comes. It has no deadline of its own: a task that must give up in
    /// time says so with a timer (`time::timeout`).
    pub fn run(&mut self, mut done: impl FnMut(T) -> io::Result<()>) -> io::Result<Report> {
        let mut unfinished = self.tasks.iter().filter(|task| task.is_some()).count();
        while unfinished > 0 {
            // The tasks queued now; those woken while these run wait for
            // the next round, after the reactor has had a look.
            let round: Vec<usize> = lock(&self.run_queue).drain(..).collect();
            for id in round {
                // Cleared before the poll: a wake during the poll queues
                // the task again. A swap, not a store, so that the poll
                // sees whatever a wake that found the bit set had done.
                self.wakers[id].queued.swap(false, Ordering::AcqRel);
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
            if unfinished > 0 {
                // Nothing left to poll: sleep until an event, a timer or a
                // wake. Something queued already: only look.
                self.reactor.turn(|| lock(&self.run_queue).is_empty())?;
            }
        }
        Ok(self.report())
    }

    pub fn report(&self) -> Report {
        let stats = self.polls.iter().zip(&self.wakers);
        Report {
            tasks: stats
                .map(|(&polls, waker)| TaskStats {
                    polls,
                    wakes: waker.wakes.load(Ordering::Relaxed),
                })
                .collect(),
            reactor: self.reactor.stats(),
            eventfd_writes: self.reactor.unpark().writes(),
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

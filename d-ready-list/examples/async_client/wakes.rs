//! A measurement: one task woken many times from another thread, and what
//! the unpark cost. A wake that finds the task already queued, or the
//! executor awake, writes nothing; only one that finds it asleep in
//! `epoll_wait` pays for an eventfd write.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Poll, Waker};
use std::thread;

use crate::executor::{Executor, Report};
use crate::reactor::Reactor;

// ANCHOR: measure
/// Another thread moves a counter on `wakes` times, waking the task after
/// each step; the task is done when it sees the last one.
pub fn measure(wakes: usize) -> io::Result<Report> {
    let reactor = Reactor::new()?;
    let mut executor = Executor::new(Rc::clone(&reactor));
    let counter = Arc::new(AtomicUsize::new(0));
    let (send_waker, waker) = mpsc::channel::<Waker>();
    let waking = {
        let counter = Arc::clone(&counter);
        thread::spawn(move || {
            if let Ok(waker) = waker.recv() {
                for _ in 0..wakes {
                    counter.fetch_add(1, Ordering::SeqCst);
                    waker.wake_by_ref();
                }
            }
        })
    };
    let mut send_waker = Some(send_waker);
    executor.spawn(poll_fn(move |cx| {
        if let Some(send) = send_waker.take() {
            let _ = send.send(cx.waker().clone());
        }
        if counter.load(Ordering::SeqCst) == wakes {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    let report = executor.run(|()| Ok(()))?;
    waking
        .join()
        .map_err(|_| io::Error::other("the waking thread panicked"))?;
    Ok(report)
}
// ANCHOR_END: measure

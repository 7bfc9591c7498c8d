//! The ring: three mappings shared with the kernel, the two queues in them,
//! and the operations in flight, each known by the `user_data` the kernel
//! hands back with its completion.
//!
//! We write the submission queue's entries and its tail; the kernel reads
//! them in `io_uring_enter` and moves the head. The kernel writes the
//! completion queue's entries and its tail, at any time; we read them and
//! move the head. Each side publishes with a release store what the other
//! reads after an acquire load of the same word.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{self, Context, Waker};

use super::ffi::{self, Cqe, Params, Sqe};

// ANCHOR: mapping
/// One `mmap` of the ring's fd, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(ring: BorrowedFd<'_>, offset: i64, len: usize) -> io::Result<Mapping> {
        // SAFETY: a new shared mapping of the ring's fd, at an address of
        // the kernel's choosing: it overlaps nothing of ours.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The word at `offset`, which the kernel gave us: in bounds and
    /// aligned for a `u32`, as its header promises.
    fn word(&self, offset: u32) -> &AtomicU32 {
        assert!(offset as usize + 4 <= self.len && offset % 4 == 0);
        // SAFETY: in bounds and aligned (asserted), and the mapping lives
        // as long as `self`; the kernel may change the word at any time,
        // which an atomic allows.
        unsafe { &*self.ptr.as_ptr().add(offset as usize).cast::<AtomicU32>() }
    }

    /// A pointer to the array of `T` at `offset`, `count` long.
    fn array<T>(&self, offset: u32, count: u32) -> *mut T {
        let end = offset as usize + count as usize * size_of::<T>();
        assert!(end <= self.len && offset as usize % align_of::<T>() == 0);
        // SAFETY: in bounds (asserted).
        unsafe { self.ptr.as_ptr().add(offset as usize).cast() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of this length; nothing points into it
        // any more (every pointer into it lives in the `Ring` that owns it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
// ANCHOR_END: mapping

// ANCHOR: lifecycle
/// Where an operation is between its submission and its completion.
enum Lifecycle {
    /// Queued or with the kernel; the waker of the future that waits.
    Waiting(Option<Waker>),
    /// Completed: its result, until the future takes it.
    Completed(i32),
    /// Its future was dropped while the kernel still had it: what the
    /// kernel may still read or write (a buffer, a sockaddr, the socket),
    /// kept here until the completion comes. The cleanup list again.
    Abandoned(#[allow(dead_code)] Box<dyn Any>),
}
// ANCHOR_END: lifecycle

/// The `user_data` of a cancellation: its completion says only whether
/// the cancel found its target, and the target's own completion follows.
const CANCEL: u64 = u64::MAX;
/// The `user_data` of a close nobody waits for. It completes silently
/// (`IOSQE_CQE_SKIP_SUCCESS`); should it fail, there is no one to tell.
const CLOSE: u64 = u64::MAX - 1;

/// What the ring's work cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Calls to `io_uring_enter`, made only by `Ring::enter`.
    pub enters: usize,
    pub submitted: usize,
    pub completions: usize,
    pub cancels: usize,
}

// ANCHOR: ring
pub struct Ring {
    // The pointers below point into these mappings; field order drops
    // the mappings before the fd.
    _sq_ring: Mapping,
    _cq_ring: Option<Mapping>,
    _sqes: Mapping,
    fd: OwnedFd,
    params: Params,

    sq_head: *const AtomicU32,
    sq_tail: *const AtomicU32,
    sq_flags: *const AtomicU32,
    sq_mask: u32,
    sq_entries: u32,
    sqes: *mut Sqe,
    /// The tail as far as we have written entries; the kernel sees it
    /// only when `enter` publishes it.
    sq_local_tail: Cell<u32>,

    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const Cqe,

    /// Indexed by `user_data`. A slot is freed only when its completion
    /// has come, so a `user_data` is never reused while the kernel has it.
    /// Nor can a late cancellation hit a new operation in the same slot:
    /// the slot is freed when `complete` reads its completion, after the
    /// turn's submit, so a cancel queued for it sits ahead of any reuse in
    /// the submission queue, and the kernel runs `ASYNC_CANCEL` at once, as
    /// it takes the entry. (`IOSQE_ASYNC` or linked entries would break
    /// that; we use neither.)
    ops: RefCell<Vec<Option<Lifecycle>>>,
    free: RefCell<Vec<usize>>,
    in_flight: Cell<usize>,
    stats: Cell<RingStats>,
    /// Every turn's entries and completions, once `record` is called (for
    /// the book's picture).
    log: RefCell<Option<Vec<QueueTurn>>>,
}

/// What went through the two queues in one turn of the reactor: the
/// entries its `io_uring_enter` sent (none if it made none), and the
/// completions read after its wait.
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct QueueTurn {
    pub sent: Vec<Sqe>,
    pub completed: Vec<Cqe>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.fd)
            .field("in_flight", &self.in_flight.get())
            .field("stats", &self.stats.get())
            .finish_non_exhaustive()
    }
}
// ANCHOR_END: ring

// ANCHOR: new
impl Ring {
    /// A ring with `entries` submission entries and a completion queue
    /// four times as long (the kernel holds back, never drops, what does
    /// not fit: `IORING_FEAT_NODROP`).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let mut params = Params {
            flags: ffi::IORING_SETUP_CQSIZE | ffi::IORING_SETUP_CLAMP,
            cq_entries: entries * 4,
            ..Params::default()
        };
        let fd = ffi::io_uring_setup(entries, &mut params)?;
        // SAFETY: io_uring_setup returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Completions held back rather than dropped (5.5), entries read
        // once and for all by `io_uring_enter` (5.5), and a close that
        // posts nothing when it succeeds (5.17): without the last, a close
        // would fail, and its fd would stay open for ever.
        let needed =
            ffi::IORING_FEAT_NODROP | ffi::IORING_FEAT_SUBMIT_STABLE | ffi::IORING_FEAT_CQE_SKIP;
        if params.features & needed != needed {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring is too old: the example needs Linux 5.17",
            ));
        }
        let (sq, cq) = (params.sq_off, params.cq_off);
        let sq_len = sq.array as usize + params.sq_entries as usize * 4;
        let cq_len = cq.cqes as usize + params.cq_entries as usize * size_of::<Cqe>();
        // Since 5.4 one mapping holds both queues' rings.
        let single = params.features & ffi::IORING_FEAT_SINGLE_MMAP != 0;
        let sq_ring = Mapping::new(
            fd.as_fd(),
            ffi::IORING_OFF_SQ_RING,
            if single { sq_len.max(cq_len) } else { sq_len },
        )?;
        let cq_ring = if single {
            None
        } else {
            Some(Mapping::new(fd.as_fd(), ffi::IORING_OFF_CQ_RING, cq_len)?)
        };
        let sqes = Mapping::new(
            fd.as_fd(),
            ffi::IORING_OFF_SQES,
            params.sq_entries as usize * size_of::<Sqe>(),
        )?;
        let cq_map = cq_ring.as_ref().unwrap_or(&sq_ring);

        // The array between the tail and the entries says which entry
        // each queue position holds: position i always holds entry i.
        let array = sq_ring.array::<u32>(sq.array, params.sq_entries);
        for i in 0..params.sq_entries {
            // SAFETY: `array` has `sq_entries` slots (checked by `array`),
            // and the kernel reads them only in `io_uring_enter`.
            unsafe { array.add(i as usize).write(i) };
        }
        let ring = Ring {
            sq_head: sq_ring.word(sq.head),
            sq_tail: sq_ring.word(sq.tail),
            sq_flags: sq_ring.word(sq.flags),
            sq_mask: sq_ring.word(sq.ring_mask).load(Ordering::Relaxed),
            sq_entries: params.sq_entries,
            sqes: sqes.array::<Sqe>(0, params.sq_entries),
            sq_local_tail: Cell::new(sq_ring.word(sq.tail).load(Ordering::Relaxed)),
            cq_head: cq_map.word(cq.head),
            cq_tail: cq_map.word(cq.tail),
            cq_mask: cq_map.word(cq.ring_mask).load(Ordering::Relaxed),
            cqes: cq_map.array::<Cqe>(cq.cqes, params.cq_entries),
            _sq_ring: sq_ring,
            _cq_ring: cq_ring,
            _sqes: sqes,
            fd,
            params,
            ops: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            stats: Cell::new(RingStats::default()),
            log: RefCell::new(None),
        };
        Ok(ring)
    }

    /// What the kernel answered to `io_uring_setup` (the tests look).
    #[allow(dead_code)]
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn stats(&self) -> RingStats {
        self.stats.get()
    }

    /// Operations the kernel has, or will have at the next `enter`, and
    /// whose completion has not been read yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    fn count(&self, change: impl FnOnce(&mut RingStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }
}
// ANCHOR_END: new

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// The words below point into mappings that live as long as `self`.
impl Ring {
    fn sq_head(&self) -> &AtomicU32 {
        // SAFETY: points into `_sq_ring`, alive while `self` is.
        unsafe { &*self.sq_head }
    }
    fn sq_tail(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.sq_tail }
    }
    fn sq_flags(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.sq_flags }
    }
    fn cq_head(&self) -> &AtomicU32 {
        // SAFETY: points into the completion ring's mapping, alive while
        // `self` is.
        unsafe { &*self.cq_head }
    }
    fn cq_tail(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.cq_tail }
    }
}

// ANCHOR: submit
impl Ring {
    /// Entries written but not yet taken by the kernel.
    fn unsubmitted(&self) -> u32 {
        // Acquire: the kernel has finished reading the entries before the
        // head it publishes, so their slots are ours to write again.
        let head = self.sq_head().load(Ordering::Acquire);
        self.sq_local_tail.get().wrapping_sub(head)
    }

    /// Writes one entry into the submission queue. It goes to the kernel
    /// with the round's others at the next `enter`, or now if the queue
    /// is full.
    fn push(&self, sqe: Sqe) -> io::Result<()> {
        if self.unsubmitted() == self.sq_entries {
            self.enter(0, 0)?;
            // The kernel stops at an entry it cannot take (the rest wait
            // for the next call): never write over one it has not read.
            if self.unsubmitted() == self.sq_entries {
                return Err(io::Error::other("the submission queue is full"));
            }
        }
        let tail = self.sq_local_tail.get();
        let slot = (tail & self.sq_mask) as usize;
        // SAFETY: `slot` is within the `sq_entries` entries of `_sqes`; the
        // kernel is done with it (it is at or past the head we loaded), and
        // reads it again only after `enter` publishes a tail past it.
        unsafe { self.sqes.add(slot).write(sqe) };
        self.sq_local_tail.set(tail.wrapping_add(1));
        Ok(())
    }

    /// The one place `io_uring_enter` is called: publishes the tail, so
    /// the kernel takes every entry written since the last call, and
    /// waits for `min_complete` completions if asked.
    fn enter(&self, min_complete: u32, flags: u32) -> io::Result<()> {
        // Release: every entry before this tail is fully written before
        // the kernel can see the tail (it loads it with acquire).
        self.sq_tail()
            .store(self.sq_local_tail.get(), Ordering::Release);
        let to_submit = self.unsubmitted();
        self.log_sent(to_submit);
        loop {
            self.count(|stats| stats.enters += 1);
            // SAFETY: each published entry was written by `start` (whose
            // caller promised that its pointers stay valid until the
            // completion, kept by the operation's slot) or points at nothing.
            let result =
                unsafe { ffi::io_uring_enter(self.fd.as_raw_fd(), to_submit, min_complete, flags) };
            match result {
                Ok(taken) => {
                    self.count(|stats| stats.submitted += taken as usize);
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The kernel is short of memory for requests, or its
                // completion queue is full: the entries stay in the queue,
                // and the next turn's submit sends them.
                Err(error) if min_complete == 0 && is_busy(&error) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends the round's entries in one `io_uring_enter`; none if there is
    /// nothing to send. Also asks for completions the kernel held back
    /// because the completion queue was full.
    pub fn submit(&self) -> io::Result<()> {
        let overflow = self.sq_flags().load(Ordering::Relaxed) & ffi::IORING_SQ_CQ_OVERFLOW != 0;
        // Entries the kernel left in the queue last time count too.
        if self.unsubmitted() > 0 || overflow {
            let flags = if overflow {
                ffi::IORING_ENTER_GETEVENTS
            } else {
                0
            };
            self.enter(0, flags)?;
        }
        Ok(())
    }
}
// ANCHOR_END: submit

/// `io_uring_enter` could not take the entries now, but may next time:
/// out of memory for requests (`EAGAIN`), or completions the kernel could
/// not post yet (`EBUSY`).
fn is_busy(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY))
}

// ANCHOR: start
impl Ring {
    /// Queues an operation and returns its id.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` (its buffer, its sockaddr) points into memory
    /// that stays valid, and is not otherwise used, until the operation's
    /// completion has been read: memory its future keeps and, if dropped
    /// early, hands to `abandon`. A pointer into nothing the kernel reads
    /// or writes (a no-op's) is fine. The fd is open until then too.
    pub unsafe fn start(&self, mut sqe: Sqe) -> io::Result<u64> {
        let mut ops = self.ops.borrow_mut();
        let id = match self.free.borrow_mut().pop() {
            Some(id) => id,
            None => {
                ops.push(None);
                ops.len() - 1
            }
        };
        sqe.user_data = id as u64;
        if let Err(error) = self.push(sqe) {
            self.free.borrow_mut().push(id);
            return Err(error);
        }
        ops[id] = Some(Lifecycle::Waiting(None));
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(id as u64)
    }

    /// Closes `fd` with the round's other entries, and posts no completion
    /// if it succeeds: a close costs no system call and wakes no one.
    /// Should the entry not fit even after an `enter`, an ordinary
    /// `close(2)` closes it now.
    pub fn close(&self, fd: OwnedFd) {
        let raw = fd.into_raw_fd();
        let queued = self.push(Sqe {
            opcode: ffi::IORING_OP_CLOSE,
            flags: ffi::IOSQE_CQE_SKIP_SUCCESS,
            fd: raw,
            user_data: CLOSE,
            ..Sqe::default()
        });
        if queued.is_err() {
            // SAFETY: the entry was not queued, so `raw` is still ours.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }

    /// The operation's result if its completion came, or `Pending` with
    /// the task's waker left for `complete`.
    pub fn poll_op(&self, id: u64, cx: &mut Context<'_>) -> task::Poll<i32> {
        let mut ops = self.ops.borrow_mut();
        match &mut ops[id as usize] {
            Some(Lifecycle::Completed(result)) => {
                let result = *result;
                ops[id as usize] = None;
                self.free.borrow_mut().push(id as usize);
                task::Poll::Ready(result)
            }
            Some(Lifecycle::Waiting(waker)) => {
                *waker = Some(cx.waker().clone());
                task::Poll::Pending
            }
            _ => unreachable!("a future polls only its own operation"),
        }
    }
}
// ANCHOR_END: start

// ANCHOR: abandon
impl Ring {
    /// The future of operation `id` is being dropped. If the completion
    /// came, there is nothing to wait for; if not, the kernel may still
    /// write into what `keep` holds, so it stays here until the
    /// completion, and a cancellation goes to the kernel with the round.
    pub fn abandon(&self, id: u64, keep: Box<dyn Any>) {
        let mut ops = self.ops.borrow_mut();
        if let Some(Lifecycle::Completed(_)) = ops[id as usize] {
            ops[id as usize] = None;
            self.free.borrow_mut().push(id as usize);
            return;
        }
        ops[id as usize] = Some(Lifecycle::Abandoned(keep));
        drop(ops);
        let cancel = Sqe {
            opcode: ffi::IORING_OP_ASYNC_CANCEL,
            fd: -1,
            addr: id,
            user_data: CANCEL,
            ..Sqe::default()
        };
        self.count(|stats| stats.cancels += 1);
        // If even a full queue cannot be sent, the operation runs to its
        // end; its buffer is kept until then all the same (and should its
        // peer never speak, `Ring::drop` waits for ever).
        let _ = self.push(cancel);
    }
}
// ANCHOR_END: abandon

// ANCHOR: complete
impl Ring {
    /// Reads every completion the kernel has posted, and hands the wakers
    /// of their tasks to `woken`. A completion for an abandoned operation
    /// frees what it kept: only now is the kernel done with it.
    pub fn complete(&self, woken: &mut Vec<Waker>) -> usize {
        // Only we write the head.
        let mut head = self.cq_head().load(Ordering::Relaxed);
        let first = head;
        // Acquire: the entries before the tail are fully written.
        let tail = self.cq_tail().load(Ordering::Acquire);
        let mut released = Vec::new();
        let mut ops = self.ops.borrow_mut();
        let mut seen = 0;
        while head != tail {
            // SAFETY: `head & cq_mask` indexes one of the `cq_entries`
            // entries, and the kernel wrote it before publishing `tail`.
            let cqe = unsafe { self.cqes.add((head & self.cq_mask) as usize).read() };
            head = head.wrapping_add(1);
            seen += 1;
            if cqe.user_data == CANCEL || cqe.user_data == CLOSE {
                continue;
            }
            let id = cqe.user_data as usize;
            self.in_flight.set(self.in_flight.get() - 1);
            match ops[id].take() {
                Some(Lifecycle::Waiting(waker)) => {
                    ops[id] = Some(Lifecycle::Completed(cqe.res));
                    woken.extend(waker);
                }
                Some(Lifecycle::Abandoned(kept)) => {
                    self.free.borrow_mut().push(id);
                    released.push(kept);
                }
                other => unreachable!("a completion for no operation: {}", other.is_some()),
            }
        }
        self.log_completed(first, tail.wrapping_sub(first));
        if seen > 0 {
            // Release: we have read the entries before the kernel may
            // reuse their slots.
            self.cq_head().store(head, Ordering::Release);
        }
        drop(ops);
        self.count(|stats| stats.completions += seen);
        // Dropped last: a socket kept alive by an abandoned operation
        // closes here.
        drop(released);
        seen
    }
}
// ANCHOR_END: complete

// The book's picture uses these; the demo does not.
#[allow(dead_code)]
impl Ring {
    /// From now on, keep a `QueueTurn` for every turn.
    pub fn record(&self) {
        *self.log.borrow_mut() = Some(vec![QueueTurn::default()]);
    }

    /// The turns recorded, each ended by a `complete`.
    pub fn recording(&self) -> Vec<QueueTurn> {
        let mut turns = self.log.borrow().clone().unwrap_or_default();
        turns.pop();
        turns
    }

    /// Copies the `count` entries the kernel is about to take.
    fn log_sent(&self, count: u32) {
        if let Some(turns) = self.log.borrow_mut().as_mut().and_then(|t| t.last_mut()) {
            let head = self.sq_head().load(Ordering::Acquire);
            for n in 0..count {
                let slot = (head.wrapping_add(n) & self.sq_mask) as usize;
                // SAFETY: a slot of `_sqes`, written by `push` and not yet
                // read by the kernel, which reads it only during `enter`.
                turns.sent.push(unsafe { self.sqes.add(slot).read() });
            }
        }
    }

    /// Copies the `count` completions from `from`, which `complete` has
    /// just read, and ends the turn.
    fn log_completed(&self, from: u32, count: u32) {
        if let Some(turns) = self.log.borrow_mut().as_mut() {
            if let Some(turn) = turns.last_mut() {
                for n in 0..count {
                    let slot = (from.wrapping_add(n) & self.cq_mask) as usize;
                    // SAFETY: one of the entries `complete` has just read,
                    // before the head that gives its slot back to the
                    // kernel moves past it.
                    turn.completed.push(unsafe { self.cqes.add(slot).read() });
                }
            }
            turns.push(QueueTurn::default());
        }
    }
}

// ANCHOR: drop
impl Drop for Ring {
    /// Every future is gone by now (each holds the reactor that holds
    /// this ring), so what is still in flight was abandoned, and its
    /// cancellation queued. Unmapping or closing now would not stop the
    /// kernel writing into the kept buffers, so wait for the completions
    /// first. Should the kernel refuse to wait, leak the kept buffers
    /// rather than free memory it may still write.
    fn drop(&mut self) {
        // A future leaked with `mem::forget` never abandoned its
        // operation: cancel those too, so that the wait below ends.
        let waiting: Vec<u64> = (self.ops.borrow().iter().enumerate())
            .filter(|(_, op)| matches!(op, Some(Lifecycle::Waiting(_))))
            .map(|(id, _)| id as u64)
            .collect();
        for id in waiting {
            self.abandon(id, Box::new(()));
        }
        // The closes queued last go too.
        let _ = self.submit();
        let mut woken = Vec::new();
        while self.in_flight() > 0 {
            if self.enter(1, ffi::IORING_ENTER_GETEVENTS).is_err() {
                let ops = std::mem::take(&mut *self.ops.borrow_mut());
                std::mem::forget(ops);
                return;
            }
            self.complete(&mut woken);
        }
    }
}
// ANCHOR_END: drop

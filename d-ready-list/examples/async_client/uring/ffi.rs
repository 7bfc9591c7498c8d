//! io_uring, declared by hand as chapter 1 declares epoll: the two system
//! calls, the structs the kernel and we both read, and the few constants
//! this example uses. Values are those of the kernel's UAPI header,
//! `include/uapi/linux/io_uring.h`; `tests/uring.rs` checks the layout
//! against what the kernel does with it.

use std::ffi::{c_int, c_long, c_uint};
use std::io;
use std::ptr;

// ANCHOR: params
/// Where each field of the submission queue lies in its mapping, as the
/// kernel reports it: the queue's layout is the kernel's to choose, so
/// nothing but these offsets says where the head or the tail is.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct SqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// The same for the completion queue.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct CqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `io_uring_setup`'s argument: we say how big and with which flags, the
/// kernel answers with the sizes it chose, its features and the offsets.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqOffsets,
    pub cq_off: CqOffsets,
}
// ANCHOR_END: params

// ANCHOR: entries
/// A submission queue entry: one operation, 64 bytes. The kernel reads
/// only the fields the opcode uses; the rest must be zero.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    /// The file offset; for `ASYNC_CANCEL`, unused.
    pub off: u64,
    /// The buffer or sockaddr; for `ASYNC_CANCEL`, the `user_data` to cancel.
    pub addr: u64,
    /// The buffer's length; for `CONNECT`, the sockaddr's length goes in `off`.
    pub len: u32,
    /// `msg_flags` for send and receive, `cancel_flags`, `rw_flags`...
    pub op_flags: u32,
    /// Ours: the kernel copies it into the operation's completion.
    pub user_data: u64,
    pub buf_index: u16,
    pub personality: u16,
    pub splice_fd_in: i32,
    pub addr3: u64,
    pub pad: u64,
}

/// A completion queue entry: which operation (its `user_data`) and its
/// result, a count or a negated errno as a system call would return it.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}
// ANCHOR_END: entries

// ANCHOR: constants
/// `mmap` offsets of the three mappings.
pub const IORING_OFF_SQ_RING: i64 = 0;
pub const IORING_OFF_CQ_RING: i64 = 0x800_0000;
pub const IORING_OFF_SQES: i64 = 0x1000_0000;

/// `io_uring_setup` flags: a completion queue of the size we ask, and
/// clamped to the maximum rather than refused if too big.
pub const IORING_SETUP_CQSIZE: u32 = 1 << 3;
pub const IORING_SETUP_CLAMP: u32 = 1 << 4;

/// Features: one mapping serves both queues (5.4); completions are never
/// dropped when the completion queue is full, only held back (5.5); an
/// entry is read once and for all when it is submitted (5.5);
/// `IOSQE_CQE_SKIP_SUCCESS` is understood (5.17).
pub const IORING_FEAT_SINGLE_MMAP: u32 = 1 << 0;
pub const IORING_FEAT_NODROP: u32 = 1 << 1;
pub const IORING_FEAT_SUBMIT_STABLE: u32 = 1 << 2;
pub const IORING_FEAT_CQE_SKIP: u32 = 1 << 11;

/// An entry's `flags`: post no completion if the operation succeeds
/// (5.17).
pub const IOSQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;

/// `io_uring_enter` flag: wait for completions, and move those held back
/// by a full queue into it.
pub const IORING_ENTER_GETEVENTS: c_uint = 1 << 0;

/// The submission queue's `flags` word: completions are held back.
pub const IORING_SQ_CQ_OVERFLOW: u32 = 1 << 1;

/// Opcodes.
#[allow(dead_code)] // the tests'
pub const IORING_OP_NOP: u8 = 0;
pub const IORING_OP_CONNECT: u8 = 16;
pub const IORING_OP_CLOSE: u8 = 19;
pub const IORING_OP_READ: u8 = 22;
pub const IORING_OP_SEND: u8 = 26;
pub const IORING_OP_RECV: u8 = 27;
pub const IORING_OP_ASYNC_CANCEL: u8 = 14;
// ANCHOR_END: constants

// ANCHOR: syscalls
/// Turns a system call's `-1` into the error errno holds.
fn check(result: c_long) -> io::Result<c_long> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Makes a ring of `entries` submission entries; the kernel fills in
/// `params`. Its fd is closed on `exec`: the kernel makes it so.
pub fn io_uring_setup(entries: u32, params: &mut Params) -> io::Result<c_int> {
    // SAFETY: the kernel reads and writes `params` (a valid, exclusive
    // `Params` laid out as its `struct io_uring_params`) during the call
    // only.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries as c_long,
            ptr::from_mut(params),
        )
    })?;
    // An fd always fits in a c_int.
    Ok(fd as c_int)
}

/// Hands the kernel `to_submit` entries from the submission queue, and
/// with `IORING_ENTER_GETEVENTS` waits for `min_complete` completions.
/// Returns how many entries it took.
///
/// # Safety
/// Every entry published to the queue must point only at memory that
/// stays valid until its completion arrives.
pub unsafe fn io_uring_enter(
    fd: c_int,
    to_submit: u32,
    min_complete: u32,
    flags: c_uint,
) -> io::Result<u32> {
    // SAFETY: no signal mask is passed (null, size 0); what the kernel
    // reads from the queues is the caller's promise above.
    let taken = check(unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd as c_long,
            to_submit as c_long,
            min_complete as c_long,
            flags as c_long,
            ptr::null::<libc::sigset_t>(),
            0 as c_long,
        )
    })?;
    // At most `to_submit`, a u32.
    Ok(taken as u32)
}
// ANCHOR_END: syscalls

//! The C functions and the one struct this chapter needs from the kernel,
//! declared by hand so that nothing stands between the reader and epoll.
//!
//! Every value here is checked against the `libc` crate when it compiles
//! (the `const` block below the struct), and again, with the functions'
//! signatures, by `tests/ffi_matches_libc.rs`.

use std::ffi::{c_int, c_uint};
use std::mem::{align_of, offset_of, size_of};

// ANCHOR: constants
/// `epoll_create1` flag: close the epoll fd in a child after `exec`.
pub const EPOLL_CLOEXEC: c_int = 0o2000000;

/// `epoll_ctl` operations.
pub const EPOLL_CTL_ADD: c_int = 1;
pub const EPOLL_CTL_DEL: c_int = 2;
pub const EPOLL_CTL_MOD: c_int = 3;

/// Readiness bits, used both to ask (`epoll_ctl`) and to answer (`epoll_wait`).
pub const EPOLLIN: u32 = 0x001;
pub const EPOLLOUT: u32 = 0x004;
/// Always reported, never needs asking for.
pub const EPOLLERR: u32 = 0x008;
/// Always reported, never needs asking for.
pub const EPOLLHUP: u32 = 0x010;
/// The peer has shut down its writing half: our reads will reach EOF.
pub const EPOLLRDHUP: u32 = 0x2000;
/// Report changes in readiness (edges) instead of readiness itself (levels).
pub const EPOLLET: u32 = 1 << 31;
/// For a file that several epoll instances watch: an event wakes one of
/// them, or a few, rather than all. Only with `EPOLL_CTL_ADD`, and not
/// with `EPOLLONESHOT` or `EPOLLRDHUP`.
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;

/// `eventfd` flags: close on `exec`, and never block.
pub const EFD_CLOEXEC: c_int = 0o2000000;
pub const EFD_NONBLOCK: c_int = 0o4000;
// ANCHOR_END: constants

// ANCHOR: epoll_event
/// One entry of interest or of readiness.
///
/// The kernel declares this struct packed on x86-64, so that it keeps the
/// layout it has on 32-bit x86, where a `u64` needs only 4-byte alignment:
/// 12 bytes with `data` at offset 4. On every other target it is 16 bytes
/// with `data` at 8. Getting this wrong makes the kernel and Rust disagree
/// on where every event after the first one starts.
///
/// The `cfg` is the `libc` crate's, which follows the C library's header:
/// glibc also packs the struct on 32-bit x86. That changes nothing the
/// kernel sees there (12 bytes, `data` at 4, either way), only the
/// alignment, 1 rather than 4; copying the `cfg` whole keeps our struct
/// equal to libc's, alignment included, on every target.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
#[cfg_attr(
    any(target_arch = "x86_64", all(target_arch = "x86", target_env = "gnu")),
    repr(packed)
)]
pub struct EpollEvent {
    /// Interest when registering, readiness when returned.
    pub events: u32,
    /// Ours to choose: the kernel hands it back untouched. We store a token.
    pub data: u64,
}
// ANCHOR_END: epoll_event

// ANCHOR: checked
// Every value above, checked against the `libc` crate as this file
// compiles: a value copied wrong, or one that differs on the target being
// built (some do, on MIPS and SPARC), stops the build here, rather than
// making calls that mean something else. (libc declares the epoll flags
// as `c_int`; the kernel's field is a `u32`.)
const _: () = {
    assert!(EPOLL_CLOEXEC == libc::EPOLL_CLOEXEC);
    assert!(EPOLL_CTL_ADD == libc::EPOLL_CTL_ADD);
    assert!(EPOLL_CTL_DEL == libc::EPOLL_CTL_DEL);
    assert!(EPOLL_CTL_MOD == libc::EPOLL_CTL_MOD);
    assert!(EPOLLIN == libc::EPOLLIN as u32);
    assert!(EPOLLOUT == libc::EPOLLOUT as u32);
    assert!(EPOLLERR == libc::EPOLLERR as u32);
    assert!(EPOLLHUP == libc::EPOLLHUP as u32);
    assert!(EPOLLRDHUP == libc::EPOLLRDHUP as u32);
    assert!(EPOLLET == libc::EPOLLET as u32);
    assert!(EPOLLEXCLUSIVE == libc::EPOLLEXCLUSIVE as u32);
    assert!(EFD_CLOEXEC == libc::EFD_CLOEXEC);
    assert!(EFD_NONBLOCK == libc::EFD_NONBLOCK);
    assert!(size_of::<EpollEvent>() == size_of::<libc::epoll_event>());
    assert!(align_of::<EpollEvent>() == align_of::<libc::epoll_event>());
    assert!(offset_of!(EpollEvent, events) == offset_of!(libc::epoll_event, events));
    assert!(offset_of!(EpollEvent, data) == offset_of!(libc::epoll_event, u64));
};
// ANCHOR_END: checked

// ANCHOR: functions
unsafe extern "C" {
    /// Makes a new epoll instance and returns its fd, or -1.
    pub fn epoll_create1(flags: c_int) -> c_int;

    /// Adds, changes or removes the interest of `epfd` in `fd`. For
    /// `EPOLL_CTL_DEL`, `event` may be null (Linux 2.6.9 and later).
    pub fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;

    /// Waits for readiness and writes up to `maxevents` entries to `events`.
    /// `timeout` is in milliseconds; -1 waits forever and 0 returns at once.
    /// Returns how many entries it wrote, or -1.
    pub fn epoll_wait(
        epfd: c_int,
        events: *mut EpollEvent,
        maxevents: c_int,
        timeout: c_int,
    ) -> c_int;

    /// Makes a counter the kernel can wait on: readable while its value is
    /// not zero, and a write adds to it. Returns its fd, or -1.
    pub fn eventfd(initval: c_uint, flags: c_int) -> c_int;
}
// ANCHOR_END: functions

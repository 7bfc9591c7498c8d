//! Our hand-written FFI must say exactly what the `libc` crate says, on
//! whatever target this runs on, or it would corrupt events at run time.
//! The `const` block in `src/ffi.rs` makes a wrong constant or layout a
//! build error; these tests check the same where a reader looks for
//! tests, and the functions' signatures, which that block does not.

use std::ffi::{c_int, c_uint};
use std::mem::{align_of, offset_of, size_of};

use d_ready_list::ffi;

#[test]
fn epoll_event_has_the_kernels_layout() {
    assert_eq!(size_of::<ffi::EpollEvent>(), size_of::<libc::epoll_event>());
    assert_eq!(
        align_of::<ffi::EpollEvent>(),
        align_of::<libc::epoll_event>()
    );
    assert_eq!(
        offset_of!(ffi::EpollEvent, events),
        offset_of!(libc::epoll_event, events)
    );
    assert_eq!(
        offset_of!(ffi::EpollEvent, data),
        offset_of!(libc::epoll_event, u64)
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn on_x86_64_the_event_is_packed_into_12_bytes() {
    assert_eq!(size_of::<ffi::EpollEvent>(), 12);
    assert_eq!(offset_of!(ffi::EpollEvent, data), 4);
}

#[test]
fn constants_equal_libcs() {
    assert_eq!(ffi::EPOLL_CLOEXEC, libc::EPOLL_CLOEXEC);
    assert_eq!(ffi::EPOLL_CTL_ADD, libc::EPOLL_CTL_ADD);
    assert_eq!(ffi::EPOLL_CTL_DEL, libc::EPOLL_CTL_DEL);
    assert_eq!(ffi::EPOLL_CTL_MOD, libc::EPOLL_CTL_MOD);
    // libc declares the flags as c_int; the kernel's field is a u32.
    assert_eq!(ffi::EPOLLIN, libc::EPOLLIN as u32);
    assert_eq!(ffi::EPOLLOUT, libc::EPOLLOUT as u32);
    assert_eq!(ffi::EPOLLERR, libc::EPOLLERR as u32);
    assert_eq!(ffi::EPOLLHUP, libc::EPOLLHUP as u32);
    assert_eq!(ffi::EPOLLRDHUP, libc::EPOLLRDHUP as u32);
    assert_eq!(ffi::EPOLLET, libc::EPOLLET as u32);
    assert_eq!(ffi::EPOLLEXCLUSIVE, libc::EPOLLEXCLUSIVE as u32);
    assert_eq!(ffi::EFD_CLOEXEC, libc::EFD_CLOEXEC);
    assert_eq!(ffi::EFD_NONBLOCK, libc::EFD_NONBLOCK);
}

/// Checked by the compiler: each function, ours and libc's, must coerce to
/// the same signature (with each side's own event struct).
#[test]
fn functions_have_libcs_signatures() {
    type Create = unsafe extern "C" fn(c_int) -> c_int;
    type Ctl<E> = unsafe extern "C" fn(c_int, c_int, c_int, *mut E) -> c_int;
    type Wait<E> = unsafe extern "C" fn(c_int, *mut E, c_int, c_int) -> c_int;
    let ours: (Create, Ctl<ffi::EpollEvent>, Wait<ffi::EpollEvent>) =
        (ffi::epoll_create1, ffi::epoll_ctl, ffi::epoll_wait);
    let libcs: (Create, Ctl<libc::epoll_event>, Wait<libc::epoll_event>) =
        (libc::epoll_create1, libc::epoll_ctl, libc::epoll_wait);
    // Same symbols, so the same addresses once linked.
    assert_eq!(ours.0 as usize, libcs.0 as usize);
    assert_eq!(ours.1 as usize, libcs.1 as usize);
    assert_eq!(ours.2 as usize, libcs.2 as usize);

    type EventFd = unsafe extern "C" fn(c_uint, c_int) -> c_int;
    let (ours, libcs): (EventFd, EventFd) = (ffi::eventfd, libc::eventfd);
    assert_eq!(ours as usize, libcs as usize);
}

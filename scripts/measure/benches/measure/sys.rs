//! The raw calls the contenders share: each wraps one libc call, turns -1
//! into `io::Error`, and (for the waits) retries `EINTR` with the time
//! that is left.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use measure::wait_ms;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers.
    let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to `epoll` with exactly these flags, and `token` as its data.
pub fn epoll_add(epoll: BorrowedFd, fd: BorrowedFd, token: usize, flags: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: flags,
        u64: token as u64,
    };
    // SAFETY: both fds are borrowed, so open, for the call, and `event` is
    // a live epoll_event that the kernel only reads.
    check(unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    })?;
    Ok(())
}

/// Waits with `epoll_wait` into `events` until something is ready or
/// `timeout` has passed; how many entries it filled (0 on timeout). A
/// signal that interrupts the wait (`EINTR`) does not end it, and the retry
/// waits only for the time that is left, not the whole timeout again.
pub fn epoll_wait(
    epoll: BorrowedFd,
    events: &mut [libc::epoll_event],
    timeout: Duration,
) -> io::Result<usize> {
    // One clock read per call, as chapter 4's `Poll` makes: the deadline
    // that an interrupted wait is retried against (none: too far to tell).
    let end = Instant::now().checked_add(timeout);
    let mut left = timeout;
    loop {
        // SAFETY: the pointer and length describe `events`, and the kernel
        // writes at most that many entries.
        let ready = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                wait_ms(left),
            )
        };
        match check(ready) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                if let Some(end) = end {
                    left = end.saturating_duration_since(Instant::now());
                }
            }
            result => return result.map(|ready| ready as usize),
        }
    }
}

/// `poll(2)` over `fds` until one has events or `timeout` has passed; how
/// many have events (0 on timeout). `EINTR` as for [`epoll_wait`].
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    // One clock read per call, as chapter 4's `Poll` makes: the deadline
    // that an interrupted wait is retried against (none: too far to tell).
    let end = Instant::now().checked_add(timeout);
    let mut left = timeout;
    loop {
        // SAFETY: the pointer and length describe `fds`, which the kernel
        // reads and writes (only `revents`) during the call.
        let ready =
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms(left)) };
        match check(ready) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                if let Some(end) = end {
                    left = end.saturating_duration_since(Instant::now());
                }
            }
            result => return result.map(|ready| ready as usize),
        }
    }
}

/// The calling thread's network namespace, to come back to with
/// [`enter_network`].
pub fn current_network() -> io::Result<OwnedFd> {
    let file = std::fs::File::open("/proc/thread-self/ns/net")?;
    Ok(OwnedFd::from(file))
}

/// Moves the calling thread, and so every process it starts from now on,
/// into a new network namespace with its loopback interface up: loopback
/// traffic, connection tables and counters of its own. Needs root (or
/// `CAP_SYS_ADMIN`).
pub fn new_network() -> io::Result<()> {
    // SAFETY: unshare takes flags, no pointers.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    // A new namespace's loopback is down: bring it up, as `ip link set lo
    // up` would, with the interface's flags read and written back.
    // SAFETY: socket takes no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    // SAFETY: the request is a live ifreq naming an interface, into which
    // SIOCGIFFLAGS writes the flags.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: SIOCGIFFLAGS has just written `ifru_flags`, the union's
    // member that SIOCSIFFLAGS reads.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads the request.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) })?;
    Ok(())
}

/// Moves the calling thread back into the network namespace `ns`.
pub fn enter_network(ns: BorrowedFd) -> io::Result<()> {
    // SAFETY: setns takes an fd, borrowed and so open, and flags.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

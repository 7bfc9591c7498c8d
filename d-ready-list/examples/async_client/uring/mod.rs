//! io_uring under the same executor, as pal_async drives it: the ring's
//! fd sits in chapter 4's epoll under a token of its own, the reactor's
//! turn reads the completions and wakes their tasks, and the submissions
//! queued while the tasks ran go to the kernel in one `io_uring_enter`
//! before the wait.

pub mod client;
pub mod ffi;
pub mod ops;
pub mod ring;

use std::io;

/// Submission entries per ring: a round that queues more sends them in
/// more than one `io_uring_enter`.
pub const ENTRIES: u32 = 1024;

/// Why the ring cannot be had here, in words a reader can act on.
pub fn unavailable(error: &io::Error) -> String {
    if error.kind() == io::ErrorKind::Unsupported {
        return error.to_string();
    }
    let why = match error.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (before Linux 5.1)",
        Some(libc::EPERM) => {
            "io_uring is refused (a seccomp profile such as Docker's default, \
             or the sysctl kernel.io_uring_disabled)"
        }
        _ => "io_uring_setup failed",
    };
    format!("{why}: {error}")
}

//! The delay server: support code, not the lesson. Plain blocking `std`, one
//! thread per connection, byte for byte the same in every chapter.
//!
//! It answers `GET /{delay_ms}/{message}` the way the delay server of the
//! book *Asynchronous Programming in Rust* does: it waits `delay_ms`, then
//! answers `200 OK` with the message as the body. A few more paths, whose
//! first segment is not a number, let the tests and later chapters provoke
//! what a real network does:
//!
//! | path              | answer                                                   |
//! | ----------------- | -------------------------------------------------------- |
//! | `/large/{bytes}`  | `200 OK` with a body of that many bytes                  |
//! | `/endless`        | `200 OK` with a body that never ends                     |
//! | `/drip/{message}` | the whole response, one byte at a time, 1 ms apart       |
//! | `/close`          | closes the connection without a byte                     |
//! | `/reset`          | resets the connection (TCP RST) without a byte           |
//! | `/malformed`      | a line that is not HTTP, then closes                     |
//! | `/truncated`      | promises 100 body bytes, sends 10, then closes           |
//! | `/silent`         | never answers (until the server stops)                   |
//!
//! Anything else gets `404 Not Found`, and a request that is not a `GET`
//! gets `400 Bad Request`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How often a blocked server thread looks up to see whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// The longest request head the server reads before giving up on it.
const MAX_REQUEST_HEAD: usize = 64 * 1024 * 1024;
/// Small stacks: a test may hold ten thousand connections open at once.
const THREAD_STACK: usize = 64 * 1024;
/// Connections the kernel may complete before we accept them (it caps this
/// at `net.core.somaxconn`). std's default, 128, makes a burst of thousands
/// of connects overflow the queue, and each dropped SYN costs its client a
/// retry one second or more later.
const BACKLOG: i32 = 4096;

/// A delay server on 127.0.0.1, on a port the OS picks. Dropping it stops
/// every thread it started and closes every socket it opened.
#[derive(Debug)]
pub struct DelayServer {
    addr: SocketAddr,
    stop: Arc<Stop>,
    acceptor: Option<JoinHandle<()>>,
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DelayServer {
    pub fn start() -> io::Result<DelayServer> {
        let listener = listen()?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(Stop::default());
        let handlers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let stop = Arc::clone(&stop);
            let handlers = Arc::clone(&handlers);
            thread::Builder::new()
                .name("delay-server".into())
                .spawn(move || accept_loop(&listener, &stop, &handlers))?
        };
        Ok(DelayServer {
            addr,
            stop,
            acceptor: Some(acceptor),
            handlers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayServer {
    fn drop(&mut self) {
        self.stop.set();
        // accept() does not look at the flag; a connection of our own wakes it.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

/// A listener on 127.0.0.1, on a port the OS picks, with a long backlog.
fn listen() -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn accept_loop(listener: &TcpListener, stop: &Arc<Stop>, handlers: &Mutex<Vec<JoinHandle<()>>>) {
    for stream in listener.incoming() {
        if stop.is_set() {
            return;
        }
        let Ok(stream) = stream else {
            // Out of fds, most likely: let some connections finish first.
            stop.sleep(STOP_CHECK);
            continue;
        };
        let stop = Arc::clone(stop);
        let spawned = thread::Builder::new()
            .name("delay-server-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _ = serve(stream, &stop);
            });
        let mut handlers = lock(handlers);
        handlers.retain(|handler| !handler.is_finished());
        // If no thread could be made, the stream was dropped with the closure:
        // the client sees the connection close.
        if let Ok(handler) = spawned {
            handlers.push(handler);
        }
    }
}

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Delayed { delay: Duration, message: String },
    Large(usize),
    Endless,
    Drip(String),
    Close,
    Reset,
    Malformed,
    Truncated,
    Silent,
    NotFound,
    BadRequest,
}

// ANCHOR: route
fn route(request_line: &str) -> Reply {
    let mut words = request_line.split(' ');
    let (Some("GET"), Some(path)) = (words.next(), words.next()) else {
        return Reply::BadRequest;
    };
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match segments[..] {
        ["large", bytes] => bytes.parse().map_or(Reply::NotFound, Reply::Large),
        ["endless"] => Reply::Endless,
        ["drip", message] => Reply::Drip(percent_decode(message)),
        ["close"] => Reply::Close,
        ["reset"] => Reply::Reset,
        ["malformed"] => Reply::Malformed,
        ["truncated"] => Reply::Truncated,
        ["silent"] => Reply::Silent,
        [delay_ms, message] => match delay_ms.parse() {
            Ok(delay_ms) => Reply::Delayed {
                delay: Duration::from_millis(delay_ms),
                message: percent_decode(message),
            },
            Err(_) => Reply::NotFound,
        },
        _ => Reply::NotFound,
    }
}
// ANCHOR_END: route

fn serve(mut stream: TcpStream, stop: &Stop) -> io::Result<()> {
    stream.set_read_timeout(Some(STOP_CHECK))?;
    stream.set_write_timeout(Some(STOP_CHECK))?;
    let Some(request_line) = read_request(&mut stream, stop)? else {
        return Ok(());
    };
    match route(&request_line) {
        Reply::Delayed { delay, message } => {
            if stop.sleep(delay) {
                send(&mut stream, stop, &response("200 OK", message.as_bytes()))?;
            }
        }
        Reply::Large(bytes) => {
            send(&mut stream, stop, &head("200 OK", Some(bytes)))?;
            let mut left = bytes;
            while left > 0 && !stop.is_set() {
                let chunk = &FILLER[..left.min(FILLER.len())];
                send(&mut stream, stop, chunk)?;
                left -= chunk.len();
            }
        }
        Reply::Endless => {
            send(&mut stream, stop, &head("200 OK", None))?;
            // Ends when the client goes away (the write fails) or we stop.
            while !stop.is_set() {
                send(&mut stream, stop, FILLER)?;
            }
        }
        Reply::Drip(message) => {
            stream.set_nodelay(true)?;
            for byte in response("200 OK", message.as_bytes()) {
                send(&mut stream, stop, &[byte])?;
                if !stop.sleep(Duration::from_millis(1)) {
                    break;
                }
            }
        }
        Reply::Close => {}
        Reply::Reset => {
            // With a zero linger time, close() sends RST instead of FIN.
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        }
        Reply::Malformed => send(&mut stream, stop, b"this is not HTTP\r\n\r\n")?,
        Reply::Truncated => {
            send(&mut stream, stop, &head("200 OK", Some(100)))?;
            send(&mut stream, stop, &FILLER[..10])?;
        }
        Reply::Silent => while stop.sleep(Duration::from_secs(3600)) {},
        Reply::NotFound => send(
            &mut stream,
            stop,
            &response("404 Not Found", b"no such path"),
        )?,
        Reply::BadRequest => send(&mut stream, stop, &response("400 Bad Request", b"GET only"))?,
    }
    Ok(())
}

/// Reads up to the blank line that ends a request head and returns the
/// first line, or `None` if the client left or the server is stopping.
/// Request heads may be large (a test sends one bigger than any socket
/// buffer), so each read is searched only where the blank line could be.
fn read_request(stream: &mut TcpStream, stop: &Stop) -> io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                let searched = head.len().saturating_sub(3);
                head.extend_from_slice(&buf[..n]);
                if head[searched..]
                    .windows(4)
                    .any(|window| window == b"\r\n\r\n")
                {
                    break;
                }
                if head.len() > MAX_REQUEST_HEAD {
                    return Ok(None);
                }
            }
            Err(error) if is_timeout(&error) && !stop.is_set() => {}
            Err(error) => return Err(error),
        }
    }
    let head = String::from_utf8_lossy(&head);
    Ok(head.lines().next().map(str::to_string))
}

/// `write_all`, except that it gives up when the server stops, so that a
/// client that no longer reads cannot keep a thread (and `Drop`) waiting.
fn send(stream: &mut TcpStream, stop: &Stop, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if is_timeout(&error) && !stop.is_set() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A response head; with no length the body runs until the connection closes.
fn head(status: &str, content_length: Option<usize>) -> Vec<u8> {
    let length = content_length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
    format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{length}Connection: close\r\n\r\n")
        .into_bytes()
}

fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = head(status, Some(body.len()));
    bytes.extend_from_slice(body);
    bytes
}

/// Body bytes for the large and endless answers: readable text, 16 KiB.
static FILLER: &[u8] = &{
    let mut filler = [b'.'; 16 * 1024];
    let mut i = 0;
    while i < filler.len() {
        filler[i] = if i % 64 == 63 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        };
        i += 1;
    }
    filler
};

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok());
        match (
            bytes[i],
            hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The stop flag, and a sleep that it cuts short.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl Stop {
    fn set(&self) {
        *lock(&self.stopped) = true;
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps for `duration`; false if the server stopped first.
    fn sleep(&self, duration: Duration) -> bool {
        let stopped = lock(&self.stopped);
        let (stopped, _) = self
            .changed
            .wait_timeout_while(stopped, duration, |stopped| !*stopped)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !*stopped
    }
}

/// A lock that survives a panicked holder: the data is a flag or a list of
/// handles, which a panic cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_like_the_books_delay_server() {
        assert_eq!(
            route("GET /1500/hello%20world HTTP/1.1"),
            Reply::Delayed {
                delay: Duration::from_millis(1500),
                message: "hello world".into()
            }
        );
        assert_eq!(route("GET /large/100 HTTP/1.1"), Reply::Large(100));
        assert_eq!(route("GET /reset HTTP/1.1"), Reply::Reset);
        assert_eq!(route("GET /soon/hello HTTP/1.1"), Reply::NotFound);
        assert_eq!(route("POST /1/x HTTP/1.1"), Reply::BadRequest);
    }

    #[test]
    fn filler_is_text() {
        assert!(FILLER.iter().all(|&b| b == b'\n' || b.is_ascii_lowercase()));
    }
}

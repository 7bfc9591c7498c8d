//! Just enough HTTP/1.1 for the client: one request line out, one response
//! in. Support code, byte for byte the same in every chapter.

use std::fmt;

/// The request for `path`. `Connection: close` asks the server to close the
/// connection once it has answered, as the book's delay server expects.
pub fn request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    Complete(Response),
    Invalid(Invalid),
}

/// Why the bytes received can never become a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The connection ended before the response head did.
    ClosedEarly { received: usize },
    /// The connection ended before `Content-Length` bytes of body arrived.
    Truncated { expected: usize, received: usize },
    /// Not an HTTP/1.x response; holds the start of what came.
    NotHttp(String),
    /// No blank line within the first `MAX_HEAD` bytes.
    HeadTooLong,
    /// A `Content-Length` that is not plain digits, or two that disagree:
    /// either way the body's end is unknown.
    BadLength(String),
    /// A body framed by `Transfer-Encoding` (chunked), which this client
    /// does not decode; holds the header's value.
    TransferEncoding(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::ClosedEarly { received: 0 } => {
                write!(f, "the server closed the connection without answering")
            }
            Invalid::ClosedEarly { received } => write!(
                f,
                "the server closed the connection after {received} bytes, mid-header"
            ),
            Invalid::Truncated { expected, received } => write!(
                f,
                "truncated response: {received} of {expected} body bytes before the connection closed"
            ),
            Invalid::NotHttp(start) => write!(f, "malformed response, starting {start:?}"),
            Invalid::HeadTooLong => {
                write!(f, "malformed response: head longer than {MAX_HEAD} bytes")
            }
            Invalid::BadLength(value) => {
                write!(f, "malformed response: Content-Length {value:?}")
            }
            Invalid::TransferEncoding(value) => write!(
                f,
                "the server sent a body with Transfer-Encoding: {value}, which this client does not decode"
            ),
        }
    }
}

/// A response head longer than this is treated as garbage.
pub const MAX_HEAD: usize = 16 * 1024;

/// Parses everything received on a connection so far; `eof` says whether the
/// peer has closed its side, which ends a body that has no `Content-Length`.
pub fn parse(received: &[u8], eof: bool) -> Parsed {
    let mut received = received;
    loop {
        let head = match parse_head(received, eof) {
            Ok(Some(head)) => head,
            Ok(None) => return Parsed::Incomplete,
            Err(invalid) => return Parsed::Invalid(invalid),
        };
        let body = &received[head.len..];
        // A 1xx response (such as 103 Early Hints) is interim: the real one
        // follows it on the same connection.
        if (100..200).contains(&head.status) {
            received = body;
            continue;
        }
        return match head.content_length {
            Some(expected) if body.len() >= expected => {
                complete(head.status, &head.reason, &body[..expected])
            }
            Some(expected) if eof => Parsed::Invalid(Invalid::Truncated {
                expected,
                received: body.len(),
            }),
            None if eof => complete(head.status, &head.reason, body),
            _ => Parsed::Incomplete,
        };
    }
}

/// A response's head: its status, and where and how its body is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    /// The head's length, blank line included: the body starts here.
    pub len: usize,
    pub content_length: Option<usize>,
}

/// The head at the start of `received`, once all of it has arrived.
pub fn parse_head(received: &[u8], eof: bool) -> Result<Option<Head>, Invalid> {
    // Search only where a head may be: a large body is not searched again
    // each time more of it arrives.
    let head_area = &received[..received.len().min(MAX_HEAD + 4)];
    let Some(head_len) = find(head_area, b"\r\n\r\n") else {
        return if received.len() > MAX_HEAD {
            Err(Invalid::HeadTooLong)
        } else if eof || !could_be_http(received) {
            Err(invalid_start(received))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&received[..head_len]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let Some((status, reason)) = parse_status_line(status_line) else {
        return Err(invalid_start(received));
    };
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid_start(received));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Invalid::TransferEncoding(value.to_string()));
        }
        if name.eq_ignore_ascii_case("content-length") {
            // Digits only: `parse` would also take "+5". A second header
            // may repeat the first, but not contradict it.
            let length = Some(value)
                .filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|value| value.parse::<usize>().ok())
                .ok_or_else(|| Invalid::BadLength(value.to_string()))?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(Invalid::BadLength(value.to_string()));
            }
            content_length = Some(length);
        }
    }
    Ok(Some(Head {
        status,
        reason: reason.to_string(),
        len: head_len + 4,
        content_length,
    }))
}

// ANCHOR: reader
/// A response read as it arrives, for a reader that should not look at the
/// same bytes twice, as [`parse`] does: until the head is whole, only the
/// new bytes are searched for its end; it is parsed once, when whole; after
/// it, bytes are only added to the body, which becomes the response's
/// without a copy. Chapter 4 uses it: it reads big bodies a budget at a
/// time, and a head may come a few bytes at a time.
#[derive(Debug, Default)]
pub struct Reader {
    /// The head's bytes until it is whole; after it, the body's.
    received: Vec<u8>,
    /// How many of the head's bytes have been searched for its end.
    searched: usize,
    head: Option<Head>,
    /// How many times the head was looked at whole, for the tests.
    #[cfg(test)]
    head_parses: usize,
}

impl Reader {
    /// The final head (not an interim 1xx one), once it is whole.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Takes what one read brought; `eof` says the peer has closed its side.
    /// Says what everything so far amounts to, as [`parse`] would; at `eof`
    /// that is never `Incomplete`.
    pub fn take(&mut self, data: &[u8], eof: bool) -> Parsed {
        self.received.extend_from_slice(data);
        while self.head.is_none() {
            // The blank line can only end in what is new (or straddle the
            // old bytes' last three). The first few bytes are always looked
            // at whole: they alone say whether this can be HTTP at all.
            let new = &self.received[self.searched.saturating_sub(3)..];
            let settled = self.searched >= 8 && self.received.len() <= MAX_HEAD;
            if settled && !eof && find(new, b"\r\n\r\n").is_none() {
                self.searched = self.received.len();
                return Parsed::Incomplete;
            }
            #[cfg(test)]
            {
                self.head_parses += 1;
            }
            match parse_head(&self.received, eof) {
                Ok(None) => {
                    self.searched = self.received.len();
                    return Parsed::Incomplete;
                }
                Err(invalid) => return Parsed::Invalid(invalid),
                Ok(Some(head)) => {
                    self.received.drain(..head.len);
                    self.searched = 0;
                    if !(100..200).contains(&head.status) {
                        self.head = Some(head);
                    }
                }
            }
        }
        let received = self.received.len();
        match self.head.as_ref().and_then(|head| head.content_length) {
            Some(expected) if received >= expected => {
                self.received.truncate(expected);
                self.finish()
            }
            Some(expected) if eof => Parsed::Invalid(Invalid::Truncated { expected, received }),
            None if eof => self.finish(),
            _ => Parsed::Incomplete,
        }
    }

    /// The body received so far, taken out: for a body that is consumed as
    /// it comes rather than kept (chapter 4's endless one).
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    fn finish(&mut self) -> Parsed {
        let head = self.head.take().expect("finish follows the head");
        Parsed::Complete(Response {
            status: head.status,
            reason: head.reason,
            body: std::mem::take(&mut self.received),
        })
    }
}
// ANCHOR_END: reader

fn complete(status: u16, reason: &str, body: &[u8]) -> Parsed {
    Parsed::Complete(Response {
        status,
        reason: reason.to_string(),
        body: body.to_vec(),
    })
}

fn parse_status_line(line: &str) -> Option<(u16, &str)> {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = code
        .parse()
        .ok()
        .filter(|code| (100..1000).contains(code))?;
    Some((status, reason))
}

/// Whether `received` could still grow into a status line: a prefix of
/// "HTTP/1." or something that starts with it.
fn could_be_http(received: &[u8]) -> bool {
    const START: &[u8] = b"HTTP/1.";
    let n = received.len().min(START.len());
    received[..n] == START[..n]
}

fn invalid_start(received: &[u8]) -> Invalid {
    if received.is_empty() || (could_be_http(received) && find(received, b"\r\n\r\n").is_none()) {
        return Invalid::ClosedEarly {
            received: received.len(),
        };
    }
    let line = received
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    Invalid::NotHttp(preview(line, 40))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The start of `bytes` as text, at most `max` characters, with the full
/// length added when it was cut: long or endless bodies stay one line.
pub fn preview(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if text.chars().count() > max {
        shown.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Parsed {
        complete(200, "OK", body.as_bytes())
    }

    #[test]
    fn a_response_is_complete_once_its_content_length_has_arrived() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], false),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(parse(bytes, false), ok("hello"));
    }

    #[test]
    fn without_content_length_the_body_ends_at_eof() {
        let bytes = b"HTTP/1.1 200 OK\r\n\r\nhel";
        assert_eq!(parse(bytes, false), Parsed::Incomplete);
        assert_eq!(parse(bytes, true), ok("hel"));
    }

    #[test]
    fn an_early_close_and_a_short_body_are_told_apart() {
        assert_eq!(
            parse(b"", true),
            Parsed::Invalid(Invalid::ClosedEarly { received: 0 })
        );
        assert_eq!(
            parse(b"HTTP/1.1 2", true),
            Parsed::Invalid(Invalid::ClosedEarly { received: 10 })
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", true),
            Parsed::Invalid(Invalid::Truncated {
                expected: 9,
                received: 3
            })
        );
    }

    #[test]
    fn garbage_is_rejected_as_soon_as_it_cannot_be_http() {
        assert_eq!(
            parse(b"SSH-2.0", false),
            Parsed::Invalid(Invalid::NotHttp("SSH-2.0".into()))
        );
        let bad_header = b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n";
        assert!(matches!(
            parse(bad_header, false),
            Parsed::Invalid(Invalid::NotHttp(_))
        ));
    }

    #[test]
    fn interim_1xx_responses_are_skipped() {
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert_eq!(parse(hints, false), Parsed::Incomplete);
        let both = [
            &hints[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        ]
        .concat();
        assert_eq!(parse(&both, false), ok("hi"));
    }

    #[test]
    fn a_length_that_is_not_plain_digits_or_disagrees_is_rejected() {
        for (value, head) in [
            ("+5", "Content-Length: +5\r\n"),
            ("-1", "Content-Length: -1\r\n"),
            ("", "Content-Length:\r\n"),
            ("7", "Content-Length: 5\r\nContent-Length: 7\r\n"),
        ] {
            let bytes = format!("HTTP/1.1 200 OK\r\n{head}\r\nhello!!");
            assert_eq!(
                parse(bytes.as_bytes(), false),
                Parsed::Invalid(Invalid::BadLength(value.into())),
                "{head:?}"
            );
        }
        let repeated = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse(repeated, false), ok("hello"));
    }

    #[test]
    fn header_names_are_matched_whatever_their_case() {
        // HTTP says header names are case-insensitive, and servers differ:
        // ours sends `Content-Length`, actix sends `content-length`.
        for name in ["Content-Length", "content-length", "CONTENT-LENGTH"] {
            let bytes = format!("HTTP/1.1 200 OK\r\n{name}: 5\r\n\r\nhello!!");
            assert_eq!(parse(bytes.as_bytes(), false), ok("hello"), "{name}");
        }
        for name in [
            "Transfer-Encoding",
            "transfer-encoding",
            "TRANSFER-ENCODING",
        ] {
            let bytes = format!("HTTP/1.1 200 OK\r\n{name}: chunked\r\n\r\n");
            assert_eq!(
                parse(bytes.as_bytes(), true),
                Parsed::Invalid(Invalid::TransferEncoding("chunked".into())),
                "{name}"
            );
        }
    }

    #[test]
    fn a_chunked_body_is_refused_not_shown_with_its_framing() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let parsed = parse(bytes, true);
        assert_eq!(
            parsed,
            Parsed::Invalid(Invalid::TransferEncoding("chunked".into()))
        );
        let Parsed::Invalid(invalid) = parsed else {
            unreachable!()
        };
        assert!(invalid.to_string().contains("does not decode"), "{invalid}");
    }

    #[test]
    fn a_reader_fed_a_byte_at_a_time_agrees_with_parse() {
        let responses: [&[u8]; 6] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more",
            b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
        ];
        for bytes in responses {
            let mut reader = Reader::default();
            let mut decided = false;
            for (i, byte) in bytes.iter().enumerate() {
                let parsed = reader.take(&[*byte], false);
                assert_eq!(parsed, parse(&bytes[..=i], false), "{bytes:?} at {i}");
                decided = parsed != Parsed::Incomplete;
                if decided {
                    break;
                }
            }
            if !decided {
                let at_eof = reader.take(&[], true);
                assert_ne!(at_eof, Parsed::Incomplete, "{bytes:?}");
                assert_eq!(at_eof, parse(bytes, true), "{bytes:?}");
            }
        }
    }

    #[test]
    fn a_head_that_comes_a_byte_at_a_time_is_looked_at_whole_only_at_its_end() {
        let head = format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n", "x".repeat(4000));
        let mut reader = Reader::default();
        for byte in head.as_bytes() {
            assert_eq!(reader.take(&[*byte], false), Parsed::Incomplete);
        }
        assert_eq!(reader.head().map(|head| head.status), Some(200));
        // The first eight bytes, and the last one: not once per byte.
        assert!(reader.head_parses <= 9, "{} parses", reader.head_parses);
    }

    #[test]
    fn previews_stay_short() {
        assert_eq!(preview(b"request-1", 60), "request-1");
        assert_eq!(preview(&[b'x'; 100], 3), "xxx... (100 bytes)");
    }
}

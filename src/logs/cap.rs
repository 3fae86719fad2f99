//! Lines of any length, in bounded memory: a reader that passes the bytes of a log through
//! and cuts every line longer than a limit, dropping the rest of it up to its newline and
//! saying so on the line (` … [cut by safedeploy: N bytes]`). The search buffers whole lines,
//! so without it a 512 MiB block of NUL bytes, or `/dev/zero`, would be held whole.
//!
//! The common case costs a `memchr` per line: bytes are read straight into the caller's
//! buffer and moved only when a line in it is cut.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// The error a read gives once interrupted.
pub const INTERRUPTED: &str = "interrupted while reading";

pub struct LineCap<R> {
    inner: R,
    max: usize,
    /// Bytes of the current line passed on so far.
    in_line: usize,
    /// Bytes of the current line dropped past `max`, up to its newline.
    dropped: u64,
    /// Bytes to hand over before anything else (a cut's note and its newline).
    ready: Vec<u8>,
    /// Bytes read but not yet looked at (what followed a cut in the same read).
    unread: Vec<u8>,
    /// Every byte read from `inner`, and the lines cut: shared with whoever reports them.
    pub read: Rc<Cell<u64>>,
    pub cut: Rc<Cell<u64>>,
    /// SIGINT/SIGTERM arrived: the read fails, so an endless input (`/dev/zero`, a FIFO that
    /// never closes) still ends when asked.
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<R: Read> LineCap<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineCap {
            inner,
            max: max.max(1),
            in_line: 0,
            dropped: 0,
            ready: vec![],
            unread: vec![],
            read: Rc::default(),
            cut: Rc::default(),
            stop: None,
        }
    }

    /// Stops reading once `flag` is set.
    pub fn stop_on(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn note(&mut self, newline: bool) {
        self.ready.extend_from_slice(format!(" … [cut by safedeploy: {} bytes]", self.dropped).as_bytes());
        if newline {
            self.ready.push(b'\n');
        }
        self.cut.set(self.cut.get() + 1);
        self.dropped = 0;
        self.in_line = 0;
    }

    /// Cuts the lines of `buf[..n]` in place; returns how many bytes stay. What follows a cut's
    /// newline goes to `unread`, so the note comes first.
    fn filter(&mut self, buf: &mut [u8], n: usize) -> usize {
        let (mut w, mut r) = (0, 0);
        while r < n {
            if self.in_line >= self.max {
                // At the limit: the line's next newline ends it; what comes before is dropped.
                let Some(i) = memchr::memchr(b'\n', &buf[r..n]) else {
                    self.dropped += (n - r) as u64;
                    return w;
                };
                self.dropped += i as u64;
                if self.dropped == 0 {
                    // Exactly `max` long: nothing to cut.
                    buf[w] = b'\n';
                    w += 1;
                    r += 1;
                    self.in_line = 0;
                    continue;
                }
                self.unread.splice(0..0, buf[r + i + 1..n].iter().copied());
                self.note(true);
                return w;
            }
            let end = n.min(r + (self.max - self.in_line));
            let take = match memchr::memchr(b'\n', &buf[r..end]) {
                Some(i) => {
                    self.in_line = 0;
                    i + 1
                }
                None => {
                    self.in_line += end - r;
                    end - r
                }
            };
            if w != r {
                buf.copy_within(r..r + take, w);
            }
            w += take;
            r += take;
        }
        w
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            // Also while a long line is being dropped, which may never end.
            if self.stop.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
                return Err(io::Error::other(INTERRUPTED));
            }
            if !self.ready.is_empty() {
                let k = self.ready.len().min(out.len());
                out[..k].copy_from_slice(&self.ready[..k]);
                self.ready.drain(..k);
                return Ok(k);
            }
            let n = if !self.unread.is_empty() {
                let k = self.unread.len().min(out.len());
                out[..k].copy_from_slice(&self.unread[..k]);
                self.unread.drain(..k);
                k
            } else {
                let n = self.inner.read(out)?;
                self.read.set(self.read.get() + n as u64);
                if n == 0 {
                    if self.dropped > 0 {
                        self.note(false);
                        continue;
                    }
                    return Ok(0);
                }
                n
            };
            let kept = self.filter(out, n);
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the cap must give: each line cut to `max` bytes with the note when it was longer.
    fn reference(input: &[u8], max: usize) -> Vec<u8> {
        let mut out = vec![];
        let lines = input.split_inclusive(|b| *b == b'\n');
        for line in lines {
            let (body, nl) = match line.strip_suffix(b"\n") {
                Some(b) => (b, true),
                None => (line, false),
            };
            if body.len() > max {
                out.extend_from_slice(&body[..max]);
                out.extend_from_slice(format!(" … [cut by safedeploy: {} bytes]", body.len() - max).as_bytes());
            } else {
                out.extend_from_slice(body);
            }
            if nl {
                out.push(b'\n');
            }
        }
        out
    }

    /// A reader that hands over at most `chunk` bytes at a time.
    struct Chunks<'a>(&'a [u8], usize);
    impl Read for Chunks<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let k = self.0.len().min(self.1).min(out.len());
            out[..k].copy_from_slice(&self.0[..k]);
            self.0 = &self.0[k..];
            Ok(k)
        }
    }

    #[test]
    fn every_line_is_cut_as_the_reference_cuts_it_whatever_the_reads() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..400 {
            let len = (next() % 300) as usize;
            let input: Vec<u8> =
                (0..len).map(|_| if next() % 9 == 0 { b'\n' } else { b'a' + (next() % 26) as u8 }).collect();
            let max = 1 + (next() % 40) as usize;
            let chunk = 1 + (next() % 64) as usize;
            let outbuf = 1 + (next() % 70) as usize;
            let mut cap = LineCap::new(Chunks(&input, chunk), max);
            let mut got = vec![];
            let mut buf = vec![0u8; outbuf];
            loop {
                let n = cap.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&reference(&input, max)),
                "case {case}: max {max}, chunk {chunk}, buffer {outbuf}, input {:?}",
                String::from_utf8_lossy(&input)
            );
            assert_eq!(cap.read.get(), input.len() as u64);
        }
    }

    #[test]
    fn an_endless_line_is_read_in_bounded_memory() {
        let mut cap = LineCap::new(std::io::repeat(0).take(64 << 20), 1024);
        let mut buf = vec![0u8; 8192];
        let mut total = 0;
        loop {
            let n = cap.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total < 1200, "{total}");
        assert_eq!(cap.cut.get(), 1);
        assert_eq!(cap.read.get(), 64 << 20);
    }
}

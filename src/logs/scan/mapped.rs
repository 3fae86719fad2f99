//! The fast path for a regular file: ripgrep's speed without ripgrep's memory.
//!
//! The file is mapped a window at a time ([`WINDOW`] bytes, unmapped before the next, so the
//! resident memory stays bounded whatever the file's size), and the matcher runs over a whole
//! window at once, so its literal prefilter sweeps the bytes at memory speed with no copy and
//! no per-line work. The scanner is handed only what it reads: each candidate line, up to the
//! before-context ahead of it, and the after-context behind it while a record or an occurrence
//! is still open. A settled scanner only keeps context lines raw in a ring for the next
//! candidate's before-context, and those lines are still in the mapping when that candidate
//! comes, so they are not handed over one by one. Lines longer than [`MAX_LINE`] are cut as
//! [`super::super::cap::LineCap`] cuts them; a line longer than a window is found to its end
//! with `memchr`, window by window.
//!
//! A file truncated while it is read (a `copytruncate` rotation) is found before each window is
//! mapped and is "could not act"; the instant between that look and the read remains, as it
//! does for every tool that maps a file (ripgrep included).

use super::{MAX_LINE, Scanner};
use anyhow::Result;
use grep_matcher::Matcher;
use std::path::Path;

/// How much is mapped at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Windows {
    /// The bytes searched at a time.
    pub size: u64,
    /// Bytes before a window's start kept mapped for the before-context of its first
    /// candidates (a line starting further back is not handed over as context).
    pub overlap: u64,
}

/// 8 MiB at a time: the search's speed is flat from about 8 MiB, and two threads' windows
/// stay far under the 64 MiB the report's memory is held to.
pub(super) const WINDOWS: Windows = Windows { size: 8 << 20, overlap: 1 << 20 };

/// Searches `start..end` of `file` (each a line start, or the file's end) into `scanner`.
/// Returns the bytes searched.
pub(super) fn search_range(
    scanner: &mut Scanner<'_, '_>,
    path: &Path,
    (start, end): (u64, u64),
    win: Windows,
) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| super::super::cannot_read(path, e))?;
    let mut s = Mapped { file: &file, path, win, start, end, pos: start, delivered: None, after_left: 0 };
    while s.pos < s.end {
        s.window(scanner)?;
    }
    scanner.flush();
    Ok(end - start)
}

struct Mapped<'f> {
    file: &'f std::fs::File,
    path: &'f Path,
    win: Windows,
    start: u64,
    end: u64,
    /// Where the next window's search starts: a line's start.
    pos: u64,
    /// The end of the last line handed over since the start: lines up to here are the
    /// scanner's.
    delivered: Option<u64>,
    /// After-context lines still to hand over behind the last candidate.
    after_left: usize,
}

/// A mapped stretch of the file: `bytes` start at the file's offset `base`.
struct Map {
    base: u64,
    mmap: memmap2::Mmap,
}

impl Map {
    fn at(&self, abs: u64) -> usize {
        (abs - self.base) as usize
    }
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        &self.mmap[self.at(from)..self.at(to)]
    }
    /// The end (after its newline, or `limit`) of the line starting at `from`.
    fn line_end(&self, from: u64, limit: u64) -> u64 {
        memchr::memchr(b'\n', self.slice(from, limit)).map_or(limit, |i| from + i as u64 + 1)
    }
}

impl Mapped<'_> {
    /// Maps `from..to` (page-aligned below `from`), after checking the file still holds it.
    /// The crate's one `unsafe`: a read-only map is what lets the search run at memory speed
    /// (a copy through `read` alone costs more than the whole search of a mapped window).
    #[allow(unsafe_code)]
    fn map(&self, from: u64, to: u64) -> Result<Map> {
        let len = self.file.metadata().map_err(|e| super::super::cannot_read(self.path, e))?.len();
        if len < to {
            return Err(crate::could_not_act!(
                "{} shrank from at least {to} to {len} bytes while it was read (truncated by a log rotation?); no report was written",
                self.path.display()
            ));
        }
        let page = 4096;
        let base = from / page * page;
        // SAFETY: the map is read only, and the file's length was checked just above; a
        // truncation in the instant since is the risk every reader of a mapped file takes.
        let mmap = unsafe { memmap2::MmapOptions::new().offset(base).len((to - base) as usize).map(self.file) }
            .map_err(|e| super::super::cannot_read(self.path, e))?;
        Ok(Map { base, mmap })
    }

    /// Searches the next window: from `pos` to the last line start in it.
    fn window(&mut self, scanner: &mut Scanner<'_, '_>) -> Result<()> {
        if scanner.sel.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::error::Error::interrupted(format!(
                "interrupted while reading {}; no report was written",
                self.path.display()
            ))
            .into());
        }
        let lower = self.start.max(self.pos.saturating_sub(self.win.overlap));
        let to = self.end.min(self.pos + self.win.size);
        let map = self.map(lower, to)?;
        let search_end = if to == self.end {
            to
        } else {
            match memchr::memrchr(b'\n', map.slice(self.pos, to)) {
                Some(i) => self.pos + i as u64 + 1,
                None => return self.huge_line(scanner, &map, lower),
            }
        };
        let hay = map.slice(map.base, search_end);
        let mut at = map.at(self.pos);
        // Where a match ends is enough to know its line (no match spans lines): the search
        // runs forward only, never back to where the match starts.
        while let Some(end) = scanner.sel.candidates.shortest_match_at(hay, at).map_err(|e| anyhow::anyhow!("{e}"))? {
            let ls = map.base + memchr::memrchr(b'\n', &hay[..end]).map_or(0, |i| i + 1) as u64;
            let ls = ls.max(self.pos);
            let le = map.line_end(map.base + end as u64, search_end);
            at = map.at(le);
            let line = map.slice(ls, le);
            // A cut line is a candidate by what is left of it, as the search saw it.
            if body(line).len() <= MAX_LINE || scanner.sel.candidates.is_match(&line[..MAX_LINE]).unwrap_or(false) {
                self.candidate(scanner, &map, lower, ls, le, |sc: &mut Scanner<'_, '_>| give(sc, line, true));
            }
            if at >= hay.len() {
                break;
            }
        }
        self.after(scanner, &map, search_end);
        self.pos = search_end;
        Ok(())
    }

    /// Hands over the candidate line `ls..le` (by `give`), after the after-context due before
    /// it and the before-context it has: a context break first where lines between were never
    /// handed over, as the search's own context break.
    fn candidate(
        &mut self,
        scanner: &mut Scanner<'_, '_>,
        map: &Map,
        lower: u64,
        ls: u64,
        le: u64,
        give_line: impl FnOnce(&mut Scanner<'_, '_>),
    ) {
        self.after(scanner, map, ls);
        let floor = self.delivered.map_or(lower, |d| d.max(lower));
        let (before, after) = scanner.sel.search_context();
        let mut from = ls;
        for _ in 0..before {
            if from <= floor {
                break;
            }
            from = map.base + memchr::memrchr(b'\n', map.slice(map.base, from - 1)).map_or(0, |i| i + 1) as u64;
            from = from.max(floor);
        }
        if self.delivered.is_some_and(|d| from > d) {
            scanner.flush();
        }
        let mut p = from;
        while p < ls {
            let e = map.line_end(p, ls);
            give(scanner, map.slice(p, e), false);
            p = e;
        }
        give_line(scanner);
        self.delivered = Some(le);
        self.after_left = after;
    }

    /// Hands over the after-context lines due up to `limit`, while the scanner still reads them.
    fn after(&mut self, scanner: &mut Scanner<'_, '_>, map: &Map, limit: u64) {
        let Some(mut p) = self.delivered else { return };
        while self.after_left > 0 && p < limit && scanner.active && p >= map.base {
            let e = map.line_end(p, limit);
            give(scanner, map.slice(p, e), false);
            self.after_left -= 1;
            p = e;
            self.delivered = Some(e);
        }
    }

    /// A line longer than the window, starting at `pos`: its end is found window by window.
    /// A line longer than [`MAX_LINE`] is cut to its first bytes, which stand for it (a
    /// candidate if they match, as the search of a cut line sees it), and counted as cut
    /// whether or not it is handed over.
    fn huge_line(&mut self, scanner: &mut Scanner<'_, '_>, map: &Map, lower: u64) -> Result<()> {
        let ls = self.pos;
        let (mut le, mut newline) = (self.end, false);
        let mut from = self.end.min(ls + self.win.size);
        while from < self.end {
            let to = self.end.min(from + self.win.size);
            let next = self.map(from, to)?;
            if let Some(i) = memchr::memchr(b'\n', next.slice(from, to)) {
                (le, newline) = (from + i as u64 + 1, true);
                break;
            }
            from = to;
        }
        let len = le - ls - u64::from(newline);
        let head = self.map(ls, if len > MAX_LINE as u64 { ls + MAX_LINE as u64 } else { le })?;
        let line = if len > MAX_LINE as u64 {
            scanner.store.lines_cut += 1;
            cut_line(head.slice(ls, head.base + head.mmap.len() as u64), len - MAX_LINE as u64, newline)
        } else {
            head.slice(ls, le).to_vec()
        };
        let candidate = scanner.sel.candidates.is_match(body(&line)).unwrap_or(false);
        if candidate {
            self.candidate(scanner, map, lower, ls, le, |sc: &mut Scanner<'_, '_>| sc.line(&line, true));
        } else if self.delivered == Some(ls) && self.after_left > 0 && scanner.active {
            scanner.line(&line, false);
            self.after_left -= 1;
            self.delivered = Some(le);
        }
        self.pos = le;
        Ok(())
    }
}

/// A line without its newline.
fn body(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// The first [`MAX_LINE`] bytes of a line, then the note of how much was dropped.
fn cut_line(head: &[u8], dropped: u64, newline: bool) -> Vec<u8> {
    let mut v = head[..MAX_LINE.min(head.len())].to_vec();
    v.extend_from_slice(format!(" … [cut by safedeploy: {dropped} bytes]").as_bytes());
    if newline {
        v.push(b'\n');
    }
    v
}

/// Hands one line to the scanner, cut if it is longer than [`MAX_LINE`].
fn give(scanner: &mut Scanner<'_, '_>, line: &[u8], candidate: bool) {
    let b = body(line);
    if b.len() > MAX_LINE {
        let cut = cut_line(b, (b.len() - MAX_LINE) as u64, b.len() < line.len());
        scanner.store.lines_cut += 1;
        scanner.line(&cut, candidate);
    } else {
        scanner.line(line, candidate);
    }
}

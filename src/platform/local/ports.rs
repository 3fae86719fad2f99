//! Ports on this machine, as the local platform needs them.
//!
//! - [`pick`]: a free loopback port for a version behind the proxy, never one that a configured
//!   environment uses (bound right now or not: before production's first deploy its port is
//!   free, and a staging app handed it would keep production's nginx from starting).
//! - [`listeners`]: who listens on a port, from the kernel's socket table and the processes'
//!   open sockets, so a port held by something else is named, and a health answer from a process
//!   that is not the version's own is never taken for the version's.
//!
//! A port picked here can still be taken by another process before the app binds it (the pick
//! releases it). The platform notices (the app exits with "address in use", or the listener is
//! not in its process group) and picks again, a bounded number of times.

use anyhow::{Context, Result};
use std::collections::HashSet;

/// How often a free port is asked for before giving up (each answer was a reserved port).
const PICK_ATTEMPTS: usize = 64;

/// A free port on 127.0.0.1 that is not in `reserved`.
pub fn pick(reserved: &HashSet<u16>) -> Result<u16> {
    pick_from(reserved, || {
        if let Some(p) = crate::failpoint::offered_port() {
            return Ok(p);
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        Ok(l.local_addr()?.port())
    })
}

/// [`pick`] with the source of candidate ports given (the kernel's, in [`pick`]).
pub fn pick_from(reserved: &HashSet<u16>, mut candidate: impl FnMut() -> Result<u16>) -> Result<u16> {
    for _ in 0..PICK_ATTEMPTS {
        let port = candidate()?;
        if !reserved.contains(&port) {
            return Ok(port);
        }
    }
    Err(crate::could_not_act!(
        "no free port outside the environments' ports ({}) after {PICK_ATTEMPTS} tries",
        describe_ports(reserved)
    ))
}

fn describe_ports(ports: &HashSet<u16>) -> String {
    let mut v: Vec<u16> = ports.iter().copied().collect();
    v.sort_unstable();
    v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// A process that listens on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// Its process group: a version's processes are all in its supervisor's group.
    pub pgid: i32,
    /// Its command line, shortened.
    pub command: String,
}

/// Who listens on `port`, on any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The processes found holding a listening socket on the port.
    pub holders: Vec<Holder>,
    /// Listening sockets whose process could not be seen (another user's, or one that has just
    /// gone).
    pub unseen: usize,
}

impl Listeners {
    pub fn any(&self) -> bool {
        !self.holders.is_empty() || self.unseen > 0
    }

    /// There is a listener, and every one is a process of the version whose supervisor is
    /// `leader`: in its process group, or descended from it (an app may leave its group, not
    /// its parent).
    pub fn all_of(&self, leader: i32) -> bool {
        self.unseen == 0
            && !self.holders.is_empty()
            && self.holders.iter().all(|h| h.pgid == leader || descends_from(h.pid, leader))
    }

    /// The holders, for a message: `pid 123 (nginx: master process ...)`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.holders.iter().map(|h| format!("pid {} ({})", h.pid, h.command)).collect();
        if self.unseen > 0 {
            parts.push(format!("{} listener(s) of a process this user cannot see", self.unseen));
        }
        if parts.is_empty() { "nothing".into() } else { parts.join(", ") }
    }
}

/// Whether `pid` is `ancestor` or descends from it.
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        match super::proc_stat(p) {
            Some(s) if s.ppid > 1 => p = s.ppid,
            _ => return false,
        }
    }
    false
}

/// Who listens on `port` now.
pub fn listeners(port: u16) -> Listeners {
    holders_of(&listening_inodes(port))
}

/// The processes holding the listening sockets `inodes` (from [`listening_inodes`]).
fn holders_of(inodes: &HashSet<u64>) -> Listeners {
    if inodes.is_empty() {
        return Listeners::default();
    }
    let mut found: HashSet<u64> = HashSet::new();
    let mut holders = vec![];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Listeners { holders, unseen: inodes.len() };
    };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let mut holds = false;
        for inode in socket_inodes(pid).filter(|i| inodes.contains(i)) {
            found.insert(inode);
            holds = true;
        }
        if holds && let Some(stat) = super::proc_stat(pid) {
            holders.push(Holder { pid, pgid: stat.pgrp, command: command_of(pid) });
        }
    }
    Listeners { holders, unseen: inodes.len() - found.len() }
}

/// Whether every socket listening on `port` is the version's whose supervisor is `leader`
/// ([`Listeners::all_of`]): asked of its group's few processes first ([`held_by_group`]), and
/// of every process only when those do not hold every listener (a descendant that left the
/// group). When not, the listeners found, to name them.
pub fn owned_by(port: u16, leader: i32) -> Result<(), Listeners> {
    let inodes = listening_inodes(port);
    if group_holds_all(&inodes, leader) {
        return Ok(());
    }
    let found = holders_of(&inodes);
    if found.all_of(leader) { Ok(()) } else { Err(found) }
}

/// Whether every listening socket on `port` is held by a member of process group `pgid`:
/// [`listeners`] for one known group, looking only at that group's processes (a few) rather
/// than at every process on the machine.
pub fn held_by_group(port: u16, pgid: i32) -> bool {
    group_holds_all(&listening_inodes(port), pgid)
}

/// Whether the members of group `pgid` hold every one of the listening sockets `inodes` (and
/// there is at least one).
fn group_holds_all(inodes: &HashSet<u64>, pgid: i32) -> bool {
    if inodes.is_empty() {
        return false;
    }
    let mut found: HashSet<u64> = HashSet::new();
    for pid in crate::procs::members(pgid) {
        found.extend(socket_inodes(pid).filter(|i| inodes.contains(i)));
    }
    found.len() == inodes.len()
}

/// Whether process `pid` still holds one of `sockets` (from [`listening_inodes`], read once
/// for many questions: under load `/proc/net/tcp` lists thousands of connections).
pub fn holds_any(pid: i32, sockets: &HashSet<u64>) -> bool {
    socket_inodes(pid).any(|i| sockets.contains(&i))
}

/// The inodes of the sockets process `pid` has open (none when its fds cannot be read).
fn socket_inodes(pid: i32) -> impl Iterator<Item = u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().filter_map(|fd| {
        let target = std::fs::read_link(fd.path()).ok()?;
        target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
}

/// Whether anything accepts connections on TCP `port` of 127.0.0.1, by trying one: refused
/// is no. Unlike reading `/proc/net/tcp` (a hundred milliseconds on a machine with thousands of
/// connections in TIME_WAIT), this answers in microseconds, so it can be asked in a loop that
/// waits on it; the connection, when it is made, is closed at once with nothing sent.
pub fn accepts(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(50)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::ConnectionRefused,
    }
}

/// The inodes of the listening TCP sockets on `port` (IPv4 and IPv6, any address): the kernel's
/// answer over netlink ([`super::sockdiag`]), or `/proc/net/tcp{,6}`'s where it gives none.
pub fn listening_inodes(port: u16) -> HashSet<u64> {
    super::sockdiag::listening_inodes(port).unwrap_or_else(|| proc_listening_inodes(port))
}

/// [`listening_inodes`] from `/proc/net/tcp{,6}`, which lists every connection too.
pub(super) fn proc_listening_inodes(port: u16) -> HashSet<u64> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        out.extend(text.lines().skip(1).filter_map(|line| listening_inode(line, port)));
    }
    out
}

/// One row of `/proc/net/tcp`: `sl local_address rem_address st ... uid timeout inode ...`,
/// the local address as `HEXADDR:HEXPORT`, state `0A` meaning LISTEN.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
    (local_port == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
}

/// A process's command line, on one line and at most 80 characters.
fn command_of(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string();
    let text = if text.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
    } else {
        text
    };
    if text.chars().count() > 80 { format!("{}…", text.chars().take(79).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_accepts_while_something_listens_and_not_after() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(accepts(port));
        drop(listener);
        assert!(!accepts(port), "refused once nothing listens");
    }

    #[test]
    fn a_reserved_port_is_never_picked() {
        let reserved: HashSet<u16> = [8101, 8102].into();
        let mut offered = vec![8102, 8101, 8102, 40123].into_iter();
        assert_eq!(pick_from(&reserved, || Ok(offered.next().expect("a candidate"))).expect("a port"), 40123);
        // Only reserved ports on offer: a clear failure, never one of them.
        let err = pick_from(&reserved, || Ok(8101)).expect_err("no port");
        assert!(err.to_string().contains("outside the environments' ports (8101, 8102)"), "{err}");
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::CouldNotAct);
    }

    #[test]
    fn the_kernels_free_ports_skip_the_reserved_ones() {
        // Reserve the next ports the kernel is likely to hand out; the pick steps around them.
        let reserved: HashSet<u16> = (0..16)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port())
            .collect();
        for _ in 0..200 {
            assert!(!reserved.contains(&pick(&reserved).expect("a port")));
        }
    }

    #[test]
    fn a_listener_is_found_with_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let found = listeners(port);
        let me = std::process::id() as i32;
        assert!(found.holders.iter().any(|h| h.pid == me), "{found:?}");
        let group = super::super::proc_stat(me).expect("stat").pgrp;
        assert!(found.all_of(group), "{found:?}");
        assert_eq!(owned_by(port, group), Ok(()));
        // A process of another group that is not its descendant is not the version's.
        assert!(!found.all_of(1), "{found:?}");
        assert!(owned_by(port, 1).is_err_and(|l| l.holders.iter().any(|h| h.pid == me)));
        assert!(found.describe().contains(&format!("pid {me} (")), "{}", found.describe());
        drop(l);
        assert!(!listeners(port).any(), "gone once closed");
    }

    #[test]
    fn proc_net_tcp_rows() {
        let row = "   1: 0100007F:1F95 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0";
        assert_eq!(listening_inode(row, 0x1F95), Some(4242));
        assert_eq!(listening_inode(row, 8080), None);
        let established = row.replace(" 0A ", " 01 ");
        assert_eq!(listening_inode(&established, 0x1F95), None);
        assert_eq!(listening_inode("garbage", 1), None);
    }
}

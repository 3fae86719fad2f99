//! The kernel's listening TCP sockets, asked over netlink (`NETLINK_SOCK_DIAG`, what `ss -ltn`
//! uses) instead of read from `/proc/net/tcp{,6}`.
//!
//! Reading `/proc/net/tcp` walks the kernel's whole connection hash table, sized by the
//! machine's memory rather than by its sockets: 6 ms per table on a 24 GiB machine with a few
//! dozen sockets, and a promote asks several times. A dump of the listening sockets alone walks
//! only the listeners' table and answers in microseconds. When the kernel does not answer (no
//! `inet_diag`, a sandbox without netlink), the caller reads `/proc` as before: a slower answer,
//! never a different one.

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use std::collections::HashSet;
use std::os::fd::AsRawFd;

/// `SOCK_DIAG_BY_FAMILY`: the request, and the type of each socket's answer.
const BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u8 = 10;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST: usize = 56;
/// `struct inet_diag_msg`: the source port (big-endian) at 4, the inode at 68.
const MESSAGE: usize = 72;

/// The inodes of the TCP sockets listening on `port` (IPv4 and IPv6, any address), or `None`
/// when the kernel could not be asked or its answer was not understood.
pub fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut out = HashSet::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        dump(family as u8, &mut |msg| out.extend(listener_on(msg, port)))?;
    }
    Some(out)
}

/// The inode of the socket an `inet_diag_msg` describes, when it listens on `port`.
fn listener_on(msg: &[u8], port: u16) -> Option<u64> {
    (msg[1] == TCP_LISTEN && u16::from_be_bytes([msg[4], msg[5]]) == port)
        .then(|| u64::from(u32::from_ne_bytes([msg[68], msg[69], msg[70], msg[71]])))
}

/// The request for every listening TCP socket of `family` (no filter in the socket id: the
/// listeners are few, and the port is checked on each answer).
fn request(family: u8) -> [u8; HEADER + REQUEST] {
    let mut b = [0u8; HEADER + REQUEST];
    b[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b[HEADER] = family;
    b[HEADER + 1] = IPPROTO_TCP;
    b[HEADER + 4..HEADER + 8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    b
}

/// Sends the request for `family` and hands each socket's `inet_diag_msg` to `each`, until the
/// kernel says done. `None` on any error, an error answer or a malformed message.
fn dump(family: u8, each: &mut dyn FnMut(&[u8])) -> Option<()> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    // The kernel answers at once; a second is a bound on what should never wait.
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(1, 0)).ok()?;
    let req = request(family);
    let sent = socket::sendto(fd.as_raw_fd(), &req, &NetlinkAddr::new(0, 0), MsgFlags::empty()).ok()?;
    if sent != req.len() {
        return None;
    }
    // The kernel fills a dump's datagrams up to 32 KiB; a larger buffer never truncates one.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (n, from) = socket::recvfrom::<NetlinkAddr>(fd.as_raw_fd(), &mut buf).ok()?;
        // Only the kernel's answer (port 0) is read: none other is a socket table.
        if n == 0 || from.is_none_or(|a| a.pid() != 0) {
            return None;
        }
        if messages(&buf[..n], each)? {
            return Some(());
        }
    }
}

/// The messages of one datagram: whether the dump is done (`false`: more datagrams follow), or
/// `None` for an error answer or a malformed message.
fn messages(mut data: &[u8], each: &mut dyn FnMut(&[u8])) -> Option<bool> {
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        if len < HEADER || len > data.len() {
            return None;
        }
        match kind {
            NLMSG_DONE => return Some(true),
            BY_FAMILY if len >= HEADER + MESSAGE => each(&data[HEADER..HEADER + MESSAGE]),
            // An error answer (`NLMSG_ERROR`: no inet_diag in this kernel, say), a type no dump
            // of sockets sends, or an answer too short for a socket.
            _ => return None,
        }
        // Messages are aligned to 4 bytes.
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    data.is_empty().then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One answer message as the kernel lays it out.
    fn answer(kind: u16, state: u8, port: u16, inode: u32) -> Vec<u8> {
        let mut m = vec![0u8; HEADER + MESSAGE];
        m[0..4].copy_from_slice(&((HEADER + MESSAGE) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[HEADER + 1] = state;
        m[HEADER + 4..HEADER + 6].copy_from_slice(&port.to_be_bytes());
        m[HEADER + 68..HEADER + 72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    /// `NLMSG_ERROR`, the kernel's error answer.
    const NLMSG_ERROR: u16 = 2;

    fn done() -> Vec<u8> {
        let mut m = vec![0u8; HEADER + 4];
        m[0..4].copy_from_slice(&((HEADER + 4) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        m
    }

    fn inodes(data: &[u8], port: u16) -> Option<(Vec<u64>, bool)> {
        let mut found = vec![];
        let done = messages(data, &mut |msg| found.extend(listener_on(msg, port)))?;
        Some((found, done))
    }

    #[test]
    fn answers_are_read_to_done_and_anything_odd_is_no_answer() {
        let two = [answer(BY_FAMILY, TCP_LISTEN, 8101, 7), answer(BY_FAMILY, TCP_LISTEN, 9000, 8)].concat();
        // A connection on the port (state 1, established) is not a listener.
        assert_eq!(inodes(&answer(BY_FAMILY, 1, 8101, 9), 8101), Some((vec![], false)));
        assert_eq!(inodes(&two, 8101), Some((vec![7], false)), "more datagrams follow");
        assert_eq!(inodes(&[two.clone(), done()].concat(), 9000), Some((vec![8], true)));
        // Whatever is not understood is no answer at all (the caller reads /proc), never a
        // partial one: an error message, a length past the datagram or under a header, a
        // trailing fragment.
        let mut error = done();
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(inodes(&[two.clone(), error].concat(), 8101), None);
        let mut long = answer(BY_FAMILY, TCP_LISTEN, 8101, 7);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(inodes(&long, 8101), None);
        let mut short = answer(BY_FAMILY, TCP_LISTEN, 8101, 7);
        short[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(inodes(&short, 8101), None);
        assert_eq!(inodes(&[two, vec![0; 5]].concat(), 8101), None);
    }

    #[test]
    fn the_kernel_names_the_same_listeners_as_proc() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().expect("addr").port();
        // A connection accepted on the port is on it too, and is not a listener.
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (conn, _) = v4.accept().expect("accept");
        let from_proc = super::super::ports::proc_listening_inodes(port);
        assert_eq!(from_proc.len(), 1, "{from_proc:?}");
        assert_eq!(listening_inodes(port), Some(from_proc.clone()));
        // IPv6 too, where the machine has it.
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let port6 = v6.local_addr().expect("addr").port();
            let from_proc = super::super::ports::proc_listening_inodes(port6);
            assert_eq!(from_proc.len(), 1, "{from_proc:?}");
            assert_eq!(listening_inodes(port6), Some(from_proc));
        }
        drop((conn, client, v4));
        // Gone once closed (another test may listen on the freed port since: its socket is not
        // this one).
        let after = listening_inodes(port).expect("an answer");
        assert!(after.is_disjoint(&from_proc), "{after:?}");
    }
}

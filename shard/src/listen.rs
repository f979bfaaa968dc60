//! The broker's listening addresses: claimed by one process, shared by its shards.
//!
//! Every shard binds every address with `SO_REUSEPORT`, so the kernel spreads new connections
//! across the cores. The kernel lets *any* process of the same user join such a group, though,
//! and a second broker started on the same port would silently take a share of the clients.
//! [`claim`] therefore makes an address this process's before any shard binds it:
//!
//! 1. **A name lock**: an abstract Unix socket named after the address
//!    (`@shardmq/listen/127.0.0.1:1883`). Only one process can hold the name, it belongs to the
//!    network namespace as the port does, and the kernel releases it when the process ends,
//!    however it ends. This settles two brokers starting at the same moment.
//! 2. **A probe**: a plain bind of the address *without* `SO_REUSEPORT`. It fails with "Address
//!    already in use" when anything at all holds the port (another broker, Mosquitto, a
//!    `SO_REUSEPORT` group of any program), exactly as Mosquitto's own bind would.
//!
//! Port 0 is resolved here once, so that every shard binds the same port: a reserving socket
//! (in the group, never listening, so it takes no share of the connections) holds the port
//! until the shards have bound it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;

use glommio::net::TcpListener;
use socket2::{Domain, Socket, Type};

/// Listen backlog requested for every listener; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 65_535;

/// This process's hold on its listening addresses; see the module doc.
#[derive(Debug)]
pub struct Claim {
    /// The addresses, port 0 resolved.
    addresses: Vec<SocketAddr>,
    /// The name locks, held for the life of the broker.
    _locks: Vec<UnixListener>,
    /// Sockets holding resolved ports until every shard has bound them.
    reservations: Vec<Socket>,
}

impl Claim {
    /// The claimed addresses (port 0 resolved).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Lets go of the port reservations, once every shard has bound its listeners.
    pub fn release_reservations(&mut self) {
        self.reservations.clear();
    }
}

/// Claims `addresses` for this process (see the module doc). Fails, naming the address, when
/// another process holds one of them.
pub fn claim(addresses: &[SocketAddr]) -> io::Result<Claim> {
    let mut claim = Claim {
        addresses: Vec::with_capacity(addresses.len()),
        _locks: Vec::new(),
        reservations: Vec::new(),
    };
    for &addr in addresses {
        let named = |err: io::Error| io::Error::new(err.kind(), format!("{addr}: {err}"));
        let addr = if addr.port() == 0 {
            let socket = reuseport_socket(addr)?;
            socket.bind(&addr.into()).map_err(named)?;
            let bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("no address"))?;
            claim.reservations.push(socket);
            claim._locks.push(lock(bound).map_err(named)?);
            bound
        } else {
            claim._locks.push(lock(addr).map_err(named)?);
            probe(addr).map_err(named)?;
            addr
        };
        claim.addresses.push(addr);
    }
    Ok(claim)
}

/// Takes the abstract socket name of `addr`.
fn lock(addr: SocketAddr) -> io::Result<UnixListener> {
    let name =
        std::os::unix::net::SocketAddr::from_abstract_name(format!("shardmq/listen/{addr}"))?;
    UnixListener::bind_addr(&name).map_err(|err| match err.kind() {
        io::ErrorKind::AddrInUse => io::Error::new(
            io::ErrorKind::AddrInUse,
            "Address already in use (another shardmq process listens there)",
        ),
        _ => err,
    })
}

/// Binds `addr` alone (no `SO_REUSEPORT`) and lets it go: fails if anything holds the port.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Connections of an earlier run in TIME_WAIT must not count as a holder.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// One shard's listener on a claimed address.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = reuseport_socket(addr)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    // SAFETY: the descriptor was just created, is a listening TCP socket, and is owned by nobody
    // else after `into_raw_fd`.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_any() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn a_claimed_address_cannot_be_claimed_again() {
        let first = claim(&[loopback_any()]).unwrap();
        let addr = first.addresses()[0];
        assert_ne!(addr.port(), 0);
        let err = claim(&[addr]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn shards_bind_a_claimed_address_and_others_cannot() {
        let mut claim = claim(&[loopback_any()]).unwrap();
        let addr = claim.addresses()[0];
        // The process's own listeners share the port, before and after the reservation goes.
        let a = bind_std(addr).unwrap();
        claim.release_reservations();
        let b = bind_std(addr).unwrap();
        // Anything else is refused, with or without SO_REUSEPORT in the lock.
        assert_eq!(probe(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop((a, b));
    }

    #[test]
    fn a_port_held_by_another_program_is_refused() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let err = claim(&[addr]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    fn bind_std(addr: SocketAddr) -> io::Result<Socket> {
        let socket = reuseport_socket(addr)?;
        socket.bind(&addr.into())?;
        socket.listen(16)?;
        Ok(socket)
    }
}

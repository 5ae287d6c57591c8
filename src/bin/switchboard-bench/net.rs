//! Sockets for load: loopback source addresses spread over 127.0.0.2… (past one
//! address's ephemeral ports), the open-file limit raised to what the process may
//! have, and MQTT connect / subscribe on top.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::{self, Incoming};

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Source address for connection `i` of a run spread over `spread` addresses
/// (`None` when `spread` is 0: let the kernel choose).
pub fn source(i: usize, spread: usize) -> Option<Ipv4Addr> {
    (spread > 0).then(|| {
        let k = 2 + (i % spread) as u32;
        Ipv4Addr::new(127, 0, (k >> 8) as u8, (k & 0xff) as u8)
    })
}

pub async fn connect(target: SocketAddr, from: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        // Choose the port at connect time, per destination: 28k ports per source
        // address and destination instead of per source address.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a pointer to a local int.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::from((ip, 0)))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// An MQTT 3.1.1 connection after CONNACK.
pub struct Mqtt {
    pub read: OwnedReadHalf,
    pub write: OwnedWriteHalf,
    pub buf: BytesMut,
}

impl Mqtt {
    pub async fn connect(
        target: SocketAddr,
        from: Option<Ipv4Addr>,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<Mqtt, String> {
        let stream = connect(target, from)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(&wire::connect(client_id, keep_alive))
            .await
            .map_err(|e| e.to_string())?;
        let mut mqtt = Mqtt {
            read,
            write,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        match mqtt.next(Duration::from_secs(10)).await? {
            Incoming::ConnAck(0) => Ok(mqtt),
            Incoming::ConnAck(code) => Err(format!("CONNACK {code}")),
            _ => Err("expected CONNACK".into()),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), String> {
        self.write
            .write_all(&wire::subscribe(1, filter, qos))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let Incoming::SubAck = self.next(Duration::from_secs(10)).await? {
                return Ok(());
            }
        }
    }

    /// The next packet, reading as needed.
    pub async fn next(&mut self, within: Duration) -> Result<Incoming, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(packet) = wire::next(&mut self.buf) {
                return packet;
            }
            let read = tokio::time::timeout_at(deadline, self.read.read_buf(&mut self.buf))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("connection closed".into());
            }
        }
    }
}

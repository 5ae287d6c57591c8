//! Limits per source address at accept, before any handshake: connections open at
//! once (`[mqtt] max_connections_per_ip`) and new connections per second (a token
//! bucket, `max_connect_rate_per_ip` with a burst of twice that). Both are off (0) by
//! default, so one loopback load generator reaches the benchmark sizes. Memory is
//! bounded: counts exist while connections do, buckets are dropped once full again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::rate::TokenBucket;

/// Buckets kept at most before full ones are swept out.
const MAX_BUCKETS: usize = 65_536;

#[derive(Default)]
struct State {
    open: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, TokenBucket>,
}

pub struct PerIp {
    max_open: usize,
    per_second: u32,
    state: Mutex<State>,
}

/// One connection's place in its address's count, given back when dropped.
pub struct PerIpSlot {
    limits: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max_open: usize, per_second: u32) -> PerIp {
        PerIp {
            max_open,
            per_second,
            state: Mutex::default(),
        }
    }

    fn limited(&self) -> bool {
        self.max_open > 0 || self.per_second > 0
    }

    /// A slot for a new connection from `ip`, or the refusal's reason.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<PerIpSlot>, &'static str> {
        if !self.limited() {
            return Ok(None);
        }
        let now = Instant::now();
        let mut state = self.state.lock();
        if self.per_second > 0 {
            if state.buckets.len() >= MAX_BUCKETS {
                state.buckets.retain(|_, bucket| !bucket.is_full(now));
            }
            let per_second = self.per_second;
            let bucket = state
                .buckets
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(per_second));
            if !bucket.take() {
                return Err("connect_rate_per_ip");
            }
        }
        if self.max_open > 0 {
            let open = state.open.entry(ip).or_insert(0);
            if *open >= self.max_open {
                return Err("max_connections_per_ip");
            }
            *open += 1;
            return Ok(Some(PerIpSlot {
                limits: self.clone(),
                ip,
            }));
        }
        Ok(None)
    }
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut state = self.limits.state.lock();
        if let Some(open) = state.open.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                state.open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connections_and_the_connect_rate_are_capped_per_address() {
        let limits = Arc::new(PerIp::new(3, 0));
        let ip: IpAddr = [127, 0, 0, 9].into();
        let slots: Vec<_> = (0..3).map(|_| limits.admit(ip).unwrap()).collect();
        assert_eq!(limits.admit(ip).err(), Some("max_connections_per_ip"));
        assert!(
            limits.admit([127, 0, 0, 10].into()).is_ok(),
            "another address"
        );
        drop(slots);
        assert!(limits.admit(ip).is_ok(), "given back");
        assert!(limits.state.lock().open.len() <= 1);

        let rate = Arc::new(PerIp::new(0, 5));
        let admitted = (0..100).filter(|_| rate.admit(ip).is_ok()).count();
        assert_eq!(admitted, 10, "a burst of twice the rate");
        assert!(Arc::new(PerIp::new(0, 0)).admit(ip).unwrap().is_none());
    }
}

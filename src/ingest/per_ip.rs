//! `ingest.max_connections_per_ip`: how many device connections one address may hold at
//! once, over all TCP listeners, so one host cannot take every `max_connections` slot.
//!
//! A connection over the limit is closed right after the accept (it never reaches a
//! session). The refusal is logged once per address until that address is back under its
//! limit, so a flood from one host writes one line, not one per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections per address; shared by every TCP listener.
#[derive(Debug)]
pub struct PerIp {
    /// 0: no limit.
    limit: usize,
    open: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    open: usize,
    /// A refusal was logged since the address was last under its limit.
    warned: bool,
}

/// What [`PerIp::take`] decided.
#[derive(Debug)]
pub enum Taken {
    /// Under the limit: the slot is held until this is dropped.
    Slot(Slot),
    /// At the limit; `log` is true for the first refusal of this episode.
    Refused { log: bool },
}

/// One connection's hold on its address's count.
#[derive(Debug)]
pub struct Slot {
    owner: Option<(Arc<PerIp>, IpAddr)>,
}

impl PerIp {
    pub fn new(limit: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or a refusal at the limit.
    pub fn take(self: &Arc<PerIp>, ip: IpAddr) -> Taken {
        if self.limit == 0 {
            return Taken::Slot(Slot { owner: None });
        }
        let Ok(mut open) = self.open.lock() else {
            // A panic elsewhere poisoned the map: serve rather than refuse everyone.
            return Taken::Slot(Slot { owner: None });
        };
        let entry = open.entry(ip).or_default();
        if entry.open >= self.limit {
            let log = !entry.warned;
            entry.warned = true;
            return Taken::Refused { log };
        }
        entry.open += 1;
        Taken::Slot(Slot {
            owner: Some((self.clone(), ip)),
        })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .map(|open| open.get(&ip).map_or(0, |e| e.open))
            .unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        if let Some(entry) = open.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
                open.remove(&ip);
            } else if entry.open < self.limit {
                entry.warned = false;
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = self.owner.take() {
            per_ip.release(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_a_slot_back_when_one_closes() {
        let per_ip = PerIp::new(2);
        let a = per_ip.take(ip(1));
        let b = per_ip.take(ip(1));
        assert!(matches!((&a, &b), (Taken::Slot(_), Taken::Slot(_))));
        assert!(matches!(per_ip.take(ip(1)), Taken::Refused { log: true }));
        // Logged once per episode, not once per connection.
        assert!(matches!(per_ip.take(ip(1)), Taken::Refused { log: false }));
        // Other addresses are not affected.
        assert!(matches!(per_ip.take(ip(2)), Taken::Slot(_)));
        drop(a);
        assert_eq!(per_ip.open(ip(1)), 1);
        let c = per_ip.take(ip(1));
        assert!(matches!(c, Taken::Slot(_)));
        // A new episode is logged again.
        assert!(matches!(per_ip.take(ip(1)), Taken::Refused { log: true }));
        drop((b, c));
        assert_eq!(per_ip.open(ip(1)), 0);
    }

    #[test]
    fn zero_is_no_limit() {
        let per_ip = PerIp::new(0);
        let slots: Vec<Taken> = (0..100).map(|_| per_ip.take(ip(1))).collect();
        assert!(slots.iter().all(|s| matches!(s, Taken::Slot(_))));
    }
}

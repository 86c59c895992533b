//! Offline-code counters: a phone's counter only goes up within one certificate.
//!
//! Each offline code carries the phone's monotonic counter. Once a gate has seen
//! counter n for a certificate serial, a code with counter <= n is a copy made
//! earlier (a screenshot passed on) even if its `cti` is new. Entries live until the
//! certificate expires, and the number of certificates remembered is capped.

use std::collections::HashMap;

use citypass_token::CertSerial;

/// Highest counter seen per certificate serial.
#[derive(Debug)]
pub struct CounterMemory {
    capacity: usize,
    /// serial -> (highest counter, certificate expiry)
    seen: HashMap<CertSerial, (u64, u64)>,
}

impl CounterMemory {
    /// A memory for at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        CounterMemory {
            capacity,
            seen: HashMap::new(),
        }
    }

    /// Accepts `counter` for `serial` if it is above every counter seen; `None` when
    /// the memory is full of live certificates (fail closed).
    pub fn advance(
        &mut self,
        serial: CertSerial,
        counter: u64,
        cert_exp: u64,
        now: u64,
    ) -> Option<bool> {
        if let Some((highest, _)) = self.seen.get_mut(&serial) {
            if counter <= *highest {
                return Some(false);
            }
            *highest = counter;
            return Some(true);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, (_, exp)| *exp >= now);
            if self.seen.len() >= self.capacity {
                return None;
            }
        }
        self.seen.insert(serial, (counter, cert_exp));
        Some(true)
    }
}

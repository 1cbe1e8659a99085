//! The bytes all comparisons of a process may hold at once
//! (`limits.max_compared_bytes`). A comparison keeps both answers until it
//! has run; with large answers a handful of them would otherwise hold more
//! than a sidecar's memory limit (`reconcile.max_inflight` counts
//! comparisons, `max_body_bytes` bounds one answer, neither bounds the sum).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The process's budget. `max` applies live (a reload sets it).
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        }
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Bytes held by comparisons now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// What one comparison holds of the budget; all of it is given back when
/// the last handle is dropped (the comparison has run, or was skipped).
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: AtomicUsize,
}

impl Held {
    pub fn new(budget: Arc<Budget>) -> Arc<Held> {
        Arc::new(Held {
            budget,
            bytes: AtomicUsize::new(0),
        })
    }

    /// Takes `n` more bytes, or says no (taking nothing) when that would
    /// pass the budget.
    pub fn take(&self, n: usize) -> bool {
        let max = self.budget.max.load(Ordering::Relaxed);
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= max)
            })
            .is_ok();
        if taken {
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let bytes = *self.bytes.get_mut();
        self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_budget_and_gives_all_back_on_drop() {
        let budget = Arc::new(Budget::new(100));
        let a = Held::new(budget.clone());
        let b = Held::new(budget.clone());
        assert!(a.take(60));
        assert!(!b.take(50), "60 + 50 passes 100");
        assert!(b.take(40));
        assert_eq!(budget.used(), 100);
        assert!(!a.take(1));
        drop(a);
        assert_eq!(budget.used(), 40);
        budget.set_max(30);
        assert!(!b.take(1), "a lowered budget applies at once");
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}

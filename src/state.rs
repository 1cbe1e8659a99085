//! Per-route state that outlives config snapshots: circuit, windows, last
//! watermarks, in-flight count and metric handles, keyed by route name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::SideName;
use crate::fallback::Circuit;
use crate::freshness::{RatioWindow, WatermarkCell};
use crate::metrics::{Metrics, RouteMetrics};

/// Everything about a route that must survive a reload.
#[derive(Debug)]
pub struct RouteState {
    pub metrics: RouteMetrics,
    pub circuit: Circuit,
    /// Indexed by `SideName::index`.
    pub watermarks: [WatermarkCell; 2],
    /// Failed share of upstream attempts, per side. Replaced (reset) only when
    /// a reload changes the window length.
    pub errors: ArcSwap<[RatioWindow; 2]>,
    /// Diverged share of comparisons.
    pub divergence: ArcSwap<RatioWindow>,
    /// Streaming reads waiting for a response head (for `max_inflight`).
    pub streaming_inflight: AtomicUsize,
    /// When the idle-side probe last ran, per side (Unix ms).
    pub probed_at: [AtomicI64; 2],
    /// Reads answered, per serving side, and fallbacks among them, for `/status`
    /// (metric handles cannot be read back).
    pub reads: [AtomicU64; 2],
    pub fallbacks: AtomicU64,
    /// Comparisons (shadow or sampled) in flight, for `reconcile.max_inflight`.
    pub reconcile_inflight: AtomicUsize,
    /// Comparisons by result: [match, diverged, skipped], for `/status`.
    pub reconciled: [AtomicU64; 3],
}

impl RouteState {
    pub fn new(metrics: &Metrics, consumer: &str, route: &str, window: Duration) -> RouteState {
        RouteState {
            metrics: RouteMetrics::new(metrics, consumer, route),
            circuit: Circuit::default(),
            watermarks: Default::default(),
            errors: ArcSwap::from_pointee([RatioWindow::new(window), RatioWindow::new(window)]),
            divergence: ArcSwap::from_pointee(RatioWindow::new(window)),
            streaming_inflight: AtomicUsize::new(0),
            probed_at: Default::default(),
            reads: Default::default(),
            fallbacks: AtomicU64::new(0),
            reconcile_inflight: AtomicUsize::new(0),
            reconciled: Default::default(),
        }
    }

    fn set_window(&self, window: Duration) {
        if self.errors.load()[0].window() != RatioWindow::new(window).window() {
            self.errors.store(Arc::new([
                RatioWindow::new(window),
                RatioWindow::new(window),
            ]));
            self.divergence.store(Arc::new(RatioWindow::new(window)));
        }
    }

    pub fn watermark(&self, side: SideName) -> &WatermarkCell {
        &self.watermarks[side.index()]
    }

    /// Takes a streaming in-flight slot unless `max` are taken. The guard
    /// gives it back.
    pub fn try_streaming_slot(&self, max: Option<usize>) -> Option<InflightGuard<'_>> {
        let n = self.streaming_inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(&self.streaming_inflight);
        match max {
            Some(max) if n >= max => None, // guard drops, giving the slot back
            _ => Some(guard),
        }
    }
}

/// Takes a comparison slot unless `max` are taken; the slot is owned so it
/// can travel with the comparison task.
pub fn try_reconcile_slot(state: &Arc<RouteState>, max: usize) -> Option<ReconcileSlot> {
    let n = state.reconcile_inflight.fetch_add(1, Ordering::AcqRel);
    let slot = ReconcileSlot(state.clone());
    (n < max).then_some(slot)
}

/// Gives back a comparison slot when dropped.
#[derive(Debug)]
pub struct ReconcileSlot(Arc<RouteState>);

impl Drop for ReconcileSlot {
    fn drop(&mut self) {
        self.0.reconcile_inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives back a streaming in-flight slot when dropped.
#[derive(Debug)]
pub struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// (consumer, route name).
type RouteKey = (String, String);

/// Hands out `RouteState` by (consumer, route name) so that a reload finds
/// the state the previous generation used. Only touched while compiling a
/// config, never per read.
#[derive(Debug, Clone)]
pub struct StateRegistry {
    metrics: Metrics,
    routes: Arc<Mutex<HashMap<RouteKey, Arc<RouteState>>>>,
}

impl StateRegistry {
    pub fn new(metrics: Metrics) -> StateRegistry {
        StateRegistry {
            metrics,
            routes: Default::default(),
        }
    }

    /// A registry whose metrics go nowhere useful: for `cutover check`.
    pub fn detached() -> StateRegistry {
        StateRegistry::new(Metrics::new())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The state for this route, shared with earlier generations.
    pub fn route_state(&self, consumer: &str, route: &str, window: Duration) -> Arc<RouteState> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let state = routes
            .entry((consumer.to_owned(), route.to_owned()))
            .or_insert_with(|| Arc::new(RouteState::new(&self.metrics, consumer, route, window)));
        state.set_window(window);
        state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_route_name_gets_the_same_state() {
        let r = StateRegistry::detached();
        let w = Duration::from_secs(300);
        let a = r.route_state("c", "orders", w);
        let b = r.route_state("c", "orders", w);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &r.route_state("c", "refunds", w)));
    }

    #[test]
    fn inflight_slots_are_bounded_and_returned() {
        let r = StateRegistry::detached();
        let s = r.route_state("c", "orders", Duration::from_secs(60));
        let a = s.try_streaming_slot(Some(2)).expect("first slot");
        let b = s.try_streaming_slot(Some(2)).expect("second slot");
        assert!(s.try_streaming_slot(Some(2)).is_none());
        drop(a);
        assert!(s.try_streaming_slot(Some(2)).is_some());
        drop(b);
        assert_eq!(s.streaming_inflight.load(Ordering::Relaxed), 0);
    }
}

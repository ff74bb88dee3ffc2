//! Render capacity, the spec's `AudioRenderCapacity`: how much of each
//! device callback's time rendering took, summed up over an update
//! interval.
//!
//! The render thread owns a [`RenderCapacityMeter`] and feeds it one
//! measurement per callback; the figures reach the control side through a
//! [`CapacityCell`] of atomics, so neither side waits for the other.

use std::sync::atomic::{AtomicU64, Ordering};

/// One update interval's figures, as in the spec's
/// `AudioRenderCapacityEvent`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RenderCapacityReport {
    /// Context time at the end of the interval, in seconds.
    pub timestamp: f64,
    /// The mean of the callbacks' loads: render time over the duration of
    /// the audio the callback delivered (1.0: rendering took all of it).
    pub average_load: f64,
    /// The largest load of one callback.
    pub peak_load: f64,
    /// The share of callbacks whose load exceeded 1.0, which the device
    /// then played late (an underrun).
    pub underrun_ratio: f64,
    /// The callbacks measured.
    pub callbacks: u64,
    /// The callbacks whose load exceeded 1.0 (the underrun counter).
    pub underruns: u64,
}

/// Load figures gathered on the render thread, without allocating or
/// locking.
#[derive(Clone, Debug)]
pub struct RenderCapacityMeter {
    update_interval: f64,
    /// Audio time measured so far in the current interval, and overall.
    elapsed: f64,
    time: f64,
    sum: f64,
    peak: f64,
    underruns: u64,
    callbacks: u64,
}

impl RenderCapacityMeter {
    /// A meter reporting every `update_interval` seconds of audio (the
    /// spec's default is 1 second).
    pub fn new(update_interval: f64) -> Self {
        Self { update_interval, elapsed: 0.0, time: 0.0, sum: 0.0, peak: 0.0, underruns: 0, callbacks: 0 }
    }

    /// Records one callback that spent `render` seconds rendering `audio`
    /// seconds of audio; returns the interval's report once `audio` time
    /// reaches the update interval, and starts the next.
    pub fn record(&mut self, render: f64, audio: f64) -> Option<RenderCapacityReport> {
        let load = if audio > 0.0 { render / audio } else { 0.0 };
        self.sum += load;
        self.peak = self.peak.max(load);
        self.underruns += u64::from(load > 1.0);
        self.callbacks += 1;
        self.elapsed += audio;
        self.time += audio;
        if self.elapsed < self.update_interval {
            return None;
        }
        let report = self.report();
        *self = Self { time: self.time, ..Self::new(self.update_interval) };
        Some(report)
    }

    /// The figures of the interval so far.
    pub fn report(&self) -> RenderCapacityReport {
        let per_callback = |x: f64| if self.callbacks == 0 { 0.0 } else { x / self.callbacks as f64 };
        RenderCapacityReport {
            timestamp: self.time,
            average_load: per_callback(self.sum),
            peak_load: self.peak,
            underrun_ratio: per_callback(self.underruns as f64),
            callbacks: self.callbacks,
            underruns: self.underruns,
        }
    }
}

/// The latest report, shared between the render thread (which stores)
/// and the control side (which loads); each field is one atomic, so a load
/// may mix two consecutive reports' fields, never tear one.
#[derive(Debug, Default)]
pub struct CapacityCell {
    timestamp: AtomicU64,
    average_load: AtomicU64,
    peak_load: AtomicU64,
    underrun_ratio: AtomicU64,
    underruns: AtomicU64,
    callbacks: AtomicU64,
}

impl CapacityCell {
    pub fn store(&self, report: &RenderCapacityReport) {
        // The count last, with Release: a reader that sees it sees the rest.
        self.timestamp.store(report.timestamp.to_bits(), Ordering::Relaxed);
        self.average_load.store(report.average_load.to_bits(), Ordering::Relaxed);
        self.peak_load.store(report.peak_load.to_bits(), Ordering::Relaxed);
        self.underrun_ratio.store(report.underrun_ratio.to_bits(), Ordering::Relaxed);
        self.underruns.store(report.underruns, Ordering::Relaxed);
        self.callbacks.store(report.callbacks, Ordering::Release);
    }

    pub fn load(&self) -> RenderCapacityReport {
        let callbacks = self.callbacks.load(Ordering::Acquire);
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        RenderCapacityReport {
            timestamp: f(&self.timestamp),
            average_load: f(&self.average_load),
            peak_load: f(&self.peak_load),
            underrun_ratio: f(&self.underrun_ratio),
            callbacks,
            underruns: self.underruns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads 0.25, 0.5 and 1.5 (an underrun) over three 10 ms callbacks,
    /// interval 25 ms: the report comes with the third, then a new interval.
    #[test]
    fn an_interval_reports_mean_peak_and_underruns() {
        let mut meter = RenderCapacityMeter::new(0.025);
        assert_eq!(meter.record(0.0025, 0.01), None);
        assert_eq!(meter.record(0.005, 0.01), None);
        let report = meter.record(0.015, 0.01).unwrap();
        assert!((report.average_load - (0.25 + 0.5 + 1.5) / 3.0).abs() < 1e-12);
        assert_eq!((report.peak_load, report.callbacks, report.underruns), (1.5, 3, 1));
        assert!((report.underrun_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert!((report.timestamp - 0.03).abs() < 1e-12);
        let next = meter.record(0.001, 0.01);
        assert_eq!(next, None);
        let so_far = meter.report();
        assert_eq!((so_far.callbacks, so_far.underrun_ratio), (1, 0.0));
        assert!((so_far.timestamp - 0.04).abs() < 1e-12 && (so_far.peak_load - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_cell_carries_a_report() {
        let cell = CapacityCell::default();
        assert_eq!(cell.load(), RenderCapacityReport::default());
        let report = RenderCapacityReport { timestamp: 2.0, average_load: 0.1, peak_load: 0.4, underrun_ratio: 0.01, callbacks: 100, underruns: 1 };
        cell.store(&report);
        assert_eq!(cell.load(), report);
    }
}

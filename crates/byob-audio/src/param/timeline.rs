//! The AudioParam automation timeline and the spec's value formulas
//! (Web Audio API §1.6.3 "Computation of Value").
//!
//! Events are kept sorted by their *event time*: the start time for
//! `setValueAtTime`, `setTargetAtTime` and `setValueCurveAtTime`, the end time
//! for ramps. A value at time `t` depends only on the last event at or before
//! `t` ("prev") and the first event after it ("next").

use crate::number::Shown;
use std::sync::Arc;

/// Why an automation call was rejected; the timeline is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AutomationError {
    #[error("{what} must be finite, got {}", Shown(*value))]
    NotFinite { what: &'static str, value: f64 },
    #[error("{what} must not be negative, got {}", Shown(*value))]
    Negative { what: &'static str, value: f64 },
    #[error("exponentialRampToValueAtTime cannot ramp to 0 (the spec throws a RangeError)")]
    ExponentialRampToZero,
    #[error("setValueCurveAtTime needs at least 2 values, got {0}")]
    CurveTooShort(usize),
    #[error("setValueCurveAtTime duration must be greater than 0, got {}", Shown(*.0))]
    NonPositiveDuration(f64),
    #[error("event at time {} overlaps a setValueCurveAtTime curve from {} to {} (NotSupportedError)", Shown(*time), Shown(*curve_start), Shown(*curve_end))]
    OverlapsCurve { time: f64, curve_start: f64, curve_end: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EventKind {
    SetValue { value: f32 },
    /// `start` is where the ramp begins when no event precedes it: the time
    /// the method was called and the parameter's value then.
    LinearRamp { value: f32, start: (f64, f32) },
    ExponentialRamp { value: f32, start: (f64, f32) },
    SetTarget { target: f32, time_constant: f64 },
    /// `hold_at` truncates the curve (cancelAndHoldAtTime) without changing
    /// the points at which it is sampled.
    SetValueCurve { values: Arc<[f32]>, duration: f64, hold_at: Option<f64> },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    pub time: f64,
    pub kind: EventKind,
}

/// A parameter's intrinsic value over time.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// The value before any event (the `value` attribute / `defaultValue`).
    initial: f32,
    events: Vec<Event>,
    /// `before[i]`: the value just before event `i` takes effect, computed
    /// from the events before it.
    before: Vec<f32>,
    /// Each setValueCurveAtTime's (start, start + duration), by start: no
    /// event may fall strictly inside one, so they never overlap in part,
    /// and the one that could hold a time is found by binary search.
    curves: Vec<(f64, f64)>,
}

fn check_time(what: &'static str, time: f64) -> Result<(), AutomationError> {
    if !time.is_finite() {
        return Err(AutomationError::NotFinite { what, value: time });
    }
    if time < 0.0 {
        return Err(AutomationError::Negative { what, value: time });
    }
    Ok(())
}

fn check_value(value: f32) -> Result<(), AutomationError> {
    if !value.is_finite() {
        return Err(AutomationError::NotFinite { what: "value", value: value as f64 });
    }
    Ok(())
}

impl Timeline {
    pub fn new(initial: f32) -> Self {
        Self { initial, events: Vec::new(), before: Vec::new(), curves: Vec::new() }
    }

    pub fn initial_value(&self) -> f32 {
        self.initial
    }

    pub fn set_initial_value(&mut self, value: f32) {
        self.initial = value;
        self.refresh();
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn set_value_at_time(&mut self, value: f32, time: f64) -> Result<(), AutomationError> {
        check_value(value)?;
        check_time("startTime", time)?;
        self.insert(Event { time, kind: EventKind::SetValue { value } })
    }

    /// `now` is the context's current time when the call is made.
    pub fn linear_ramp_to_value_at_time(&mut self, value: f32, end_time: f64, now: f64) -> Result<(), AutomationError> {
        check_value(value)?;
        check_time("endTime", end_time)?;
        let start = (now, self.value_at(now));
        self.insert(Event { time: end_time, kind: EventKind::LinearRamp { value, start } })
    }

    pub fn exponential_ramp_to_value_at_time(&mut self, value: f32, end_time: f64, now: f64) -> Result<(), AutomationError> {
        check_value(value)?;
        check_time("endTime", end_time)?;
        if value == 0.0 {
            return Err(AutomationError::ExponentialRampToZero);
        }
        let start = (now, self.value_at(now));
        self.insert(Event { time: end_time, kind: EventKind::ExponentialRamp { value, start } })
    }

    pub fn set_target_at_time(&mut self, target: f32, start_time: f64, time_constant: f64) -> Result<(), AutomationError> {
        check_value(target)?;
        check_time("startTime", start_time)?;
        check_time("timeConstant", time_constant)?;
        self.insert(Event { time: start_time, kind: EventKind::SetTarget { target, time_constant } })
    }

    pub fn set_value_curve_at_time(&mut self, values: &[f32], start_time: f64, duration: f64) -> Result<(), AutomationError> {
        check_time("startTime", start_time)?;
        if !duration.is_finite() || duration <= 0.0 {
            return Err(AutomationError::NonPositiveDuration(duration));
        }
        if values.len() < 2 {
            return Err(AutomationError::CurveTooShort(values.len()));
        }
        for &v in values {
            check_value(v)?;
        }
        let end = start_time + duration;
        if !end.is_finite() {
            return Err(AutomationError::NotFinite { what: "startTime + duration", value: end });
        }
        // No event strictly inside the new curve (the first after its start).
        if let Some(e) = self.events.get(self.events.partition_point(|e| e.time <= start_time)).filter(|e| e.time < end) {
            return Err(AutomationError::OverlapsCurve { time: e.time, curve_start: start_time, curve_end: end });
        }
        // Checked before either is inserted, so that both are or neither.
        self.check_outside_curves(start_time)?;
        self.check_outside_curves(end)?;
        let curve = Event {
            time: start_time,
            kind: EventKind::SetValueCurve { values: values.into(), duration, hold_at: None },
        };
        self.insert_unchecked(curve);
        // The spec inserts an implicit setValueAtTime(values[N-1], T0 + TD).
        self.insert_unchecked(Event { time: end, kind: EventKind::SetValue { value: values[values.len() - 1] } });
        Ok(())
    }

    pub fn cancel_scheduled_values(&mut self, cancel_time: f64) -> Result<(), AutomationError> {
        check_time("cancelTime", cancel_time)?;
        self.events.retain(|e| {
            let curve_in_progress = matches!(e.kind, EventKind::SetValueCurve { duration, .. }
                if e.time < cancel_time && cancel_time < e.time + duration);
            e.time < cancel_time && !curve_in_progress
        });
        self.refresh();
        Ok(())
    }

    pub fn cancel_and_hold_at_time(&mut self, cancel_time: f64) -> Result<(), AutomationError> {
        check_time("cancelTime", cancel_time)?;
        let held = self.value_at(cancel_time);
        let split = self.events.partition_point(|e| e.time <= cancel_time);
        let ramp_in_progress = self.events.get_mut(split).and_then(|e2| match &mut e2.kind {
            EventKind::LinearRamp { value, .. } | EventKind::ExponentialRamp { value, .. } => {
                // Rewrite the ramp to end at the cancel time, where it would have been.
                *value = held;
                e2.time = cancel_time;
                Some(())
            }
            _ => None,
        });
        if ramp_in_progress.is_some() {
            self.events.truncate(split + 1);
            self.refresh();
            return Ok(());
        }
        self.events.truncate(split);
        if let Some(e1) = self.events.last_mut() {
            match &mut e1.kind {
                EventKind::SetTarget { .. } => {
                    self.events.push(Event { time: cancel_time, kind: EventKind::SetValue { value: held } });
                }
                EventKind::SetValueCurve { duration, hold_at, .. } if cancel_time <= e1.time + *duration => {
                    *hold_at = Some(cancel_time);
                }
                _ => {}
            }
        }
        self.refresh();
        Ok(())
    }

    fn insert(&mut self, event: Event) -> Result<(), AutomationError> {
        self.check_outside_curves(event.time)?;
        self.insert_unchecked(event);
        Ok(())
    }

    /// An event at `time` may not fall strictly inside a curve.
    fn check_outside_curves(&self, time: f64) -> Result<(), AutomationError> {
        let before = self.curves.partition_point(|c| c.0 < time);
        match before.checked_sub(1).map(|i| self.curves[i]) {
            Some((curve_start, curve_end)) if time < curve_end => Err(AutomationError::OverlapsCurve { time, curve_start, curve_end }),
            _ => Ok(()),
        }
    }

    /// Inserts an event checked against the curves, in O(log n) plus the
    /// events after it whose starting value it changes (none when events
    /// arrive in time order, as they mostly do).
    fn insert_unchecked(&mut self, event: Event) {
        if let EventKind::SetValueCurve { duration, .. } = event.kind {
            let at = self.curves.partition_point(|c| c.0 <= event.time);
            self.curves.insert(at, (event.time, event.time + duration));
        }
        // After events at the same time, before later ones (spec §1.6.2).
        let at = self.events.partition_point(|e| e.time <= event.time);
        self.events.insert(at, event);
        self.before.insert(at, 0.0);
        // `before[k]` depends on events k and k-1 and on before[k-1] alone:
        // once one past the new event comes out as it was, so would every
        // later one.
        for k in at..self.events.len() {
            let v = self.value_in_segment(k, self.events[k].time);
            if k > at && self.before[k].to_bits() == v.to_bits() {
                break;
            }
            self.before[k] = v;
        }
    }

    /// Recomputes what the events imply, after events were removed or cut.
    fn refresh(&mut self) {
        self.before.clear();
        for i in 0..self.events.len() {
            let v = self.value_in_segment(i, self.events[i].time);
            self.before.push(v);
        }
        self.curves = self.events.iter().filter_map(|e| match e.kind {
            EventKind::SetValueCurve { duration, .. } => Some((e.time, e.time + duration)),
            _ => None,
        }).collect();
    }

    /// The intrinsic value at time `t`.
    pub fn value_at(&self, t: f64) -> f32 {
        self.value_in_segment(self.events.partition_point(|e| e.time <= t), t)
    }

    /// The first index whose event time is after `t`, searching from `from`.
    pub(crate) fn advance(&self, mut from: usize, t: f64) -> usize {
        while from < self.events.len() && self.events[from].time <= t {
            from += 1;
        }
        from
    }

    /// The intrinsic value at `t`, where `next` is the number of events whose
    /// time is at or before `t` considered (events from `next` on lie after `t`).
    pub(crate) fn value_in_segment(&self, next: usize, t: f64) -> f32 {
        if let Some(ramp) = self.events.get(next) {
            if let EventKind::LinearRamp { value, start } | EventKind::ExponentialRamp { value, start } = &ramp.kind {
                let (t0, v0) = self.ramp_start(next, *start);
                if t < t0 {
                    return v0;
                }
                let (v0, v1) = (v0 as f64, *value as f64);
                let phase = (t - t0) / (ramp.time - t0);
                let v = if matches!(ramp.kind, EventKind::LinearRamp { .. }) {
                    v0 + (v1 - v0) * phase
                } else if v0 == 0.0 || (v0 < 0.0) != (v1 < 0.0) {
                    v0
                } else {
                    v0 * (v1 / v0).powf(phase)
                };
                return v as f32;
            }
        }
        match next.checked_sub(1) {
            Some(prev_index) => self.value_after(prev_index, t),
            None => self.initial,
        }
    }

    /// The value at `t` of the automation that event `i` starts, for `t` at
    /// or after its time and before the next event.
    fn value_after(&self, i: usize, t: f64) -> f32 {
        let prev = &self.events[i];
        match &prev.kind {
            EventKind::SetValue { value }
            | EventKind::LinearRamp { value, .. }
            | EventKind::ExponentialRamp { value, .. } => *value,
            EventKind::SetTarget { target, time_constant } => {
                if *time_constant == 0.0 {
                    return *target;
                }
                let v0 = self.before[i] as f64;
                let v1 = *target as f64;
                (v1 + (v0 - v1) * (-(t - prev.time) / time_constant).exp()) as f32
            }
            EventKind::SetValueCurve { values, duration, .. } => {
                curve_value(values, prev.time, *duration, t.min(self.curve_end(i)))
            }
        }
    }

    /// (T0, V0) of the ramp at index `i`: the previous event's time and value,
    /// or, with no previous event, the time and value when it was scheduled.
    fn ramp_start(&self, i: usize, scheduled: (f64, f32)) -> (f64, f32) {
        let Some(prev_index) = i.checked_sub(1) else {
            return scheduled;
        };
        let prev = &self.events[prev_index];
        match &prev.kind {
            EventKind::SetValue { value }
            | EventKind::LinearRamp { value, .. }
            | EventKind::ExponentialRamp { value, .. } => (prev.time, *value),
            // A ramp after a setTarget replaces it (spec: T0 and V0 are taken
            // where the setTarget starts, keeping the curve continuous).
            EventKind::SetTarget { .. } => (prev.time, self.before[prev_index]),
            EventKind::SetValueCurve { .. } => {
                let end = self.curve_end(prev_index);
                (end, self.value_after(prev_index, end))
            }
        }
    }

    fn curve_end(&self, i: usize) -> f64 {
        match &self.events[i].kind {
            EventKind::SetValueCurve { duration, hold_at, .. } => {
                hold_at.map_or(self.events[i].time + duration, |h| h.min(self.events[i].time + duration))
            }
            _ => self.events[i].time,
        }
    }

    /// True when no event changes the value in `[from, to]` given the
    /// segment index for `from`.
    pub(crate) fn is_constant_between(&self, next: usize, from: f64, to: f64) -> bool {
        if let Some(e) = self.events.get(next) {
            if e.time <= to || matches!(e.kind, EventKind::LinearRamp { .. } | EventKind::ExponentialRamp { .. }) {
                return false;
            }
        }
        match next.checked_sub(1).map(|i| (i, &self.events[i].kind)) {
            None => true,
            Some((_, EventKind::SetTarget { time_constant, .. })) => *time_constant == 0.0,
            Some((i, EventKind::SetValueCurve { .. })) => self.curve_end(i) <= from,
            Some(_) => true,
        }
    }
}

/// The spec's setValueCurveAtTime interpolation at time `t` (`t0 <= t`).
fn curve_value(values: &[f32], t0: f64, duration: f64, t: f64) -> f32 {
    let n = values.len();
    if t >= t0 + duration {
        return values[n - 1];
    }
    let position = (n - 1) as f64 / duration * (t - t0);
    let k = position.floor() as usize;
    if k + 1 >= n {
        return values[n - 1];
    }
    let (a, b) = (values[k] as f64, values[k + 1] as f64);
    (a + (b - a) * (position - k as f64)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The incrementally kept `before` and `curves` equal what a full
    /// recomputation gives, for events of every kind inserted in random
    /// time order.
    #[test]
    fn incremental_insertion_matches_a_full_refresh() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut t = Timeline::new(0.5);
            for _ in 0..40 {
                let time = next(50) as f64 / 10.0;
                let value = next(100) as f32 / 10.0 + 0.1;
                // Errors (an event inside a curve) leave the timeline as it was.
                let _ = match next(5) {
                    0 => t.set_value_at_time(value, time),
                    1 => t.linear_ramp_to_value_at_time(value, time, 0.0),
                    2 => t.exponential_ramp_to_value_at_time(value, time, 0.0),
                    3 => t.set_target_at_time(value, time, 0.3),
                    _ => t.set_value_curve_at_time(&[value, 1.0, value * 2.0], time, 0.35),
                };
                let mut full = t.clone();
                full.refresh();
                assert_eq!(t.before.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), full.before.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                assert_eq!(t.curves, full.curves);
            }
        }
    }

    /// A million events: quadratic insertion would take hours.
    #[test]
    fn a_million_events_insert_in_n_log_n() {
        let mut t = Timeline::new(0.0);
        for i in 0..1_000_000 {
            t.set_value_at_time(i as f32, i as f64 * 1e-3).unwrap();
        }
        t.set_value_curve_at_time(&[1.0, 2.0], 2000.0, 1.0).unwrap();
        assert!(matches!(t.set_value_at_time(0.0, 2000.5), Err(AutomationError::OverlapsCurve { .. })));
        assert!(matches!(t.set_value_curve_at_time(&[1.0, 2.0], 1999.5, 1.0), Err(AutomationError::OverlapsCurve { .. })));
        assert_eq!(t.events.len(), 1_000_002);
        assert_eq!(t.value_at(500.0005), 500_000.0);
    }
}

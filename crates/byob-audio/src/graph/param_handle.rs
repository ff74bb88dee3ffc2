//! [`AudioParam`]: a parameter of a graph's node, for its `value`,
//! `automationRate` and automation methods, before or while rendering.

use crate::graph::NodeError;
use crate::param::{AudioParamDescriptor, AutomationError, ParamState};

/// A parameter of a graph's node. Before rendering starts the context's
/// current time is 0; on a playing graph, ramps without an earlier event
/// start at the time the graph's changes are made (see
/// [`AudioGraph::set_current_time`](super::AudioGraph::set_current_time)).
pub struct AudioParam<'a> {
    pub(super) state: &'a mut ParamState,
    pub(super) now: f64,
}

impl AudioParam<'_> {
    pub fn descriptor(&self) -> &AudioParamDescriptor {
        &self.state.descriptor
    }

    /// The `value` attribute: the intrinsic value before any automation event.
    pub fn value(&self) -> f32 {
        self.state.timeline.initial_value()
    }

    /// Sets the `value` attribute, clamped to the nominal range as the spec's
    /// setter does.
    pub fn set_value(&mut self, value: f32) -> Result<(), AutomationError> {
        if !value.is_finite() {
            return Err(AutomationError::NotFinite { what: "value", value: value as f64 });
        }
        let d = &self.state.descriptor;
        self.state.timeline.set_initial_value(value.clamp(d.min_value, d.max_value));
        Ok(())
    }

    /// Sets `automationRate`; parameters whose rate the spec fixes refuse
    /// a change (InvalidStateError).
    pub fn set_automation_rate(&mut self, rate: crate::param::AutomationRate) -> Result<(), NodeError> {
        if self.state.rate_is_fixed && rate != self.state.descriptor.automation_rate {
            return Err(NodeError::InvalidState {
                what: format!("the automationRate of {} cannot be changed", self.state.descriptor.name),
            });
        }
        self.state.descriptor.automation_rate = rate;
        Ok(())
    }

    /// The timeline itself, for calls that need an explicit current time.
    pub fn timeline(&mut self) -> &mut crate::param::Timeline {
        &mut self.state.timeline
    }

    pub fn set_value_at_time(&mut self, value: f32, start_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_value_at_time(value, start_time)?;
        Ok(self)
    }

    pub fn linear_ramp_to_value_at_time(&mut self, value: f32, end_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.linear_ramp_to_value_at_time(value, end_time, self.now)?;
        Ok(self)
    }

    pub fn exponential_ramp_to_value_at_time(&mut self, value: f32, end_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.exponential_ramp_to_value_at_time(value, end_time, self.now)?;
        Ok(self)
    }

    pub fn set_target_at_time(&mut self, target: f32, start_time: f64, time_constant: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_target_at_time(target, start_time, time_constant)?;
        Ok(self)
    }

    pub fn set_value_curve_at_time(&mut self, values: &[f32], start_time: f64, duration: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_value_curve_at_time(values, start_time, duration)?;
        Ok(self)
    }

    pub fn cancel_scheduled_values(&mut self, cancel_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.cancel_scheduled_values(cancel_time)?;
        Ok(self)
    }

    pub fn cancel_and_hold_at_time(&mut self, cancel_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.cancel_and_hold_at_time(cancel_time)?;
        Ok(self)
    }
}

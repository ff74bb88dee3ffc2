//! AudioParam automation checked against the Web Audio API's formulas
//! (§"Computation of Value" and the automation methods), evaluated here in
//! f64 at t = n / sampleRate, independently of the engine's timeline code.
//!
//! Most tests automate the `offset` of a started ConstantSourceNode
//! (a-rate, nominal range ±f32::MAX) rendered into a mono context: the
//! rendered samples are the parameter's computed values.

use byob_audio::graph::AudioParam;
use byob_audio::param::{ParamState, Timeline};
use byob_audio::{
    AudioNode, AudioParamDescriptor, AudioScheduledSourceNode, AutomationRate, ConstantSourceNode, ConstantSourceOptions,
    GainNode, GainOptions, OfflineAudioContext, ParamBuffer, RENDER_QUANTUM_SIZE,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SR: f32 = 8000.0;
const FRAMES: usize = 4096;
const TOL: f64 = 1e-6;
const TOL_EXP: f64 = 1e-5;

/// Renders `FRAMES` frames of a ConstantSourceNode (offset `initial`)
/// whose offset parameter `setup` automates.
fn render_offset(initial: f32, setup: impl FnOnce(&mut AudioParam<'_>) -> TestResult) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, FRAMES, SR)?;
    let graph = ctx.graph();
    let src = ConstantSourceNode::new(graph, ConstantSourceOptions { offset: initial })?;
    src.start(graph, 0.0)?;
    let dest = graph.destination();
    graph.connect(src.id(), 0, dest, 0)?;
    setup(&mut graph.param(src.offset()))?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

fn time(n: usize) -> f64 {
    n as f64 / SR as f64
}

fn assert_values(actual: &[f32], expected: impl Fn(f64) -> f64, tol: f64, what: &str) {
    for (n, &a) in actual.iter().enumerate() {
        let e = expected(time(n));
        let a = a as f64;
        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{what}: frame {n} (t = {}): got {a}, expected {e}", time(n));
    }
}

/// f32 constants as the engine stores them.
fn v(x: f32) -> f64 {
    x as f64
}

// Spec formulas.

fn linear(t: f64, t0: f64, v0: f64, t1: f64, v1: f64) -> f64 {
    v0 + (v1 - v0) * (t - t0) / (t1 - t0)
}

fn exponential(t: f64, t0: f64, v0: f64, t1: f64, v1: f64) -> f64 {
    if v0 == 0.0 || (v0 < 0.0) != (v1 < 0.0) {
        return v0;
    }
    v0 * (v1 / v0).powf((t - t0) / (t1 - t0))
}

fn target(t: f64, t0: f64, v0: f64, v1: f64, tau: f64) -> f64 {
    v1 + (v0 - v1) * (-(t - t0) / tau).exp()
}

/// setValueCurveAtTime at `t` in [t0, t0 + td), sampled as the spec says.
fn curve(t: f64, values: &[f32], t0: f64, td: f64) -> f64 {
    let n = values.len();
    if t >= t0 + td {
        return v(values[n - 1]);
    }
    let k = ((n - 1) as f64 / td * (t - t0)).floor() as usize;
    if k >= n - 1 {
        return v(values[n - 1]);
    }
    let step = td / (n - 1) as f64;
    let (a, b) = (v(values[k]), v(values[k + 1]));
    a + (b - a) * ((t - t0) - k as f64 * step) / step
}

#[test]
fn set_value_at_time_takes_effect_at_the_first_frame_at_or_after_it() -> TestResult {
    let t1 = 0.01234; // 98.72 frames: frame 99 is the first at or after it
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.5, t1)?;
        p.timeline().set_value_at_time(-0.25, 0.1)?; // frame 800 exactly
        Ok(())
    })?;
    assert_eq!(out[98], 1.0);
    assert_eq!(out[99], 0.5);
    assert_eq!(out[799], 0.5);
    assert_eq!(out[800], -0.25);
    assert_values(&out, |t| if t < t1 { 1.0 } else if t < 0.1 { 0.5 } else { -0.25 }, TOL, "setValueAtTime");
    Ok(())
}

#[test]
fn linear_ramps_start_at_the_previous_event() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.05)?;
        p.timeline().linear_ramp_to_value_at_time(0.9, 0.3, 0.0)?;
        p.timeline().linear_ramp_to_value_at_time(-0.4, 0.45, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < 0.05 {
                1.0
            } else if t < 0.3 {
                linear(t, 0.05, v(0.2), 0.3, v(0.9))
            } else if t < 0.45 {
                linear(t, 0.3, v(0.9), 0.45, v(-0.4))
            } else {
                v(-0.4)
            }
        },
        TOL,
        "linear ramps",
    );
    Ok(())
}

#[test]
fn exponential_ramps() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.1, 0.02)?;
        p.timeline().exponential_ramp_to_value_at_time(2.0, 0.2, 0.0)?;
        p.timeline().exponential_ramp_to_value_at_time(0.05, 0.4013, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < 0.02 {
                1.0
            } else if t < 0.2 {
                exponential(t, 0.02, v(0.1), 0.2, v(2.0))
            } else if t < 0.4013 {
                exponential(t, 0.2, v(2.0), 0.4013, v(0.05))
            } else {
                v(0.05)
            }
        },
        TOL_EXP,
        "exponential ramps",
    );
    // Negative values on both ends are fine too.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(-0.3, 0.0)?;
        p.timeline().exponential_ramp_to_value_at_time(-1.7, 0.25, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| if t < 0.25 { exponential(t, 0.0, v(-0.3), 0.25, v(-1.7)) } else { v(-1.7) },
        TOL_EXP,
        "negative exponential ramp",
    );
    Ok(())
}

#[test]
fn exponential_ramp_with_opposite_signs_or_zero_start_holds_v0() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(-0.5, 0.0)?;
        p.timeline().exponential_ramp_to_value_at_time(0.75, 0.2, 0.0)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.2 { -0.5 } else { 0.75 }, TOL, "opposite signs");
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.0, 0.0)?;
        p.timeline().exponential_ramp_to_value_at_time(1.0, 0.1, 0.0)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.1 { 0.0 } else { 1.0 }, TOL, "zero start");
    Ok(())
}

/// With no previous event, a ramp behaves as if setValueAtTime(value,
/// currentTime) had been called: here from the param's value at time 0.
#[test]
fn ramps_without_a_previous_event_start_at_time_zero_from_the_value() -> TestResult {
    let out = render_offset(0.3, |p| {
        p.timeline().linear_ramp_to_value_at_time(1.3, 0.25, 0.0)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.25 { linear(t, 0.0, v(0.3), 0.25, v(1.3)) } else { v(1.3) }, TOL, "linear, no previous event");
    let out = render_offset(0.3, |p| {
        p.timeline().exponential_ramp_to_value_at_time(0.6, 0.25, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| if t < 0.25 { exponential(t, 0.0, v(0.3), 0.25, v(0.6)) } else { v(0.6) },
        TOL_EXP,
        "exponential, no previous event",
    );
    Ok(())
}

#[test]
fn set_target_at_time() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.0)?;
        p.timeline().set_target_at_time(1.0, 0.0501, 0.03)?;
        p.timeline().set_value_at_time(-0.1, 0.3)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < 0.0501 {
                v(0.2)
            } else if t < 0.3 {
                target(t, 0.0501, v(0.2), v(1.0), 0.03)
            } else {
                v(-0.1)
            }
        },
        TOL_EXP,
        "setTarget",
    );
    // No previous event: V0 is the param's value.
    let out = render_offset(1.0, |p| {
        p.timeline().set_target_at_time(-0.5, 0.1, 0.05)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.1 { 1.0 } else { target(t, 0.1, 1.0, v(-0.5), 0.05) }, TOL_EXP, "setTarget from value");
    // A setTarget after a linear ramp starts from the ramp's end value.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.0, 0.0)?;
        p.timeline().linear_ramp_to_value_at_time(0.8, 0.1, 0.0)?;
        p.timeline().set_target_at_time(0.1, 0.2, 0.07)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < 0.1 {
                linear(t, 0.0, 0.0, 0.1, v(0.8))
            } else if t < 0.2 {
                v(0.8)
            } else {
                target(t, 0.2, v(0.8), v(0.1), 0.07)
            }
        },
        TOL_EXP,
        "setTarget after a ramp",
    );
    Ok(())
}

#[test]
fn set_target_with_zero_time_constant_jumps() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.0)?;
        p.timeline().set_target_at_time(0.7, 0.10007, 0.0)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.10007 { 0.2f32 as f64 } else { 0.7f32 as f64 }, TOL, "setTarget tau = 0");
    Ok(())
}

#[test]
fn set_value_curve_at_time() -> TestResult {
    let values = [0.5f32, -0.25, 1.0, 0.0, 0.8];
    let (t0, td) = (0.0503, 0.2011);
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_curve_at_time(&values, t0, td)?;
        // Follows from the implicit setValueAtTime(V[N-1], T0 + TD).
        p.timeline().linear_ramp_to_value_at_time(0.3, 0.4, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < t0 {
                1.0
            } else if t < t0 + td {
                curve(t, &values, t0, td)
            } else if t < 0.4 {
                linear(t, t0 + td, v(0.8), 0.4, v(0.3))
            } else {
                v(0.3)
            }
        },
        TOL,
        "setValueCurve then ramp",
    );
    // Alone: holds the last value after T0 + TD.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_curve_at_time(&values, t0, td)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < t0 { 1.0 } else { curve(t, &values, t0, td) }, TOL, "setValueCurve alone");
    Ok(())
}

/// The ramp's previous event is the setTarget: T0 is the setTarget's start
/// time and V0 the value there (the value just before the setTarget).
#[test]
fn ramp_after_set_target() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.0)?;
        p.timeline().set_target_at_time(1.0, 0.1, 0.05)?;
        p.timeline().linear_ramp_to_value_at_time(0.6, 0.3, 0.0)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| {
            if t < 0.1 {
                v(0.2)
            } else if t < 0.3 {
                linear(t, 0.1, v(0.2), 0.3, v(0.6))
            } else {
                v(0.6)
            }
        },
        TOL,
        "linear ramp after setTarget",
    );
    Ok(())
}

#[test]
fn cancel_scheduled_values() -> TestResult {
    // Removing a ramp in progress restores the previous value.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.05)?;
        p.timeline().linear_ramp_to_value_at_time(0.9, 0.3, 0.0)?;
        p.timeline().set_value_at_time(0.1, 0.4)?;
        p.timeline().cancel_scheduled_values(0.2)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.05 { 1.0 } else { v(0.2) }, TOL, "cancel a ramp in progress");
    // Events at or after the cancel time go; earlier ones stay.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.3, 0.05)?;
        p.timeline().set_value_at_time(0.6, 0.1)?;
        p.timeline().set_value_at_time(0.9, 0.2)?;
        p.timeline().cancel_scheduled_values(0.1)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.05 { 1.0 } else { v(0.3) }, TOL, "cancel future events");
    // An active setValueCurve (its time before the cancel time) is cancelled too.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.4, 0.0)?;
        p.timeline().set_value_curve_at_time(&[0.0, 1.0], 0.1, 0.2)?;
        p.timeline().cancel_scheduled_values(0.2)?;
        Ok(())
    })?;
    assert_values(&out, |_| v(0.4), TOL, "cancel a curve in progress");
    // Cancelling then scheduling again.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.5, 0.0)?;
        p.timeline().linear_ramp_to_value_at_time(2.0, 0.4, 0.0)?;
        p.timeline().cancel_scheduled_values(0.1)?;
        p.timeline().linear_ramp_to_value_at_time(-1.0, 0.3, 0.0)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.3 { linear(t, 0.0, 0.5, 0.3, -1.0) } else { -1.0 }, TOL, "cancel then reschedule");
    Ok(())
}

#[test]
fn cancel_and_hold_during_a_linear_ramp() -> TestResult {
    let tc = 0.15123;
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.05)?;
        p.timeline().linear_ramp_to_value_at_time(1.0, 0.3, 0.0)?;
        p.timeline().set_value_at_time(0.1, 0.4)?;
        p.timeline().cancel_and_hold_at_time(tc)?;
        Ok(())
    })?;
    let ramp = |t: f64| linear(t, 0.05, v(0.2), 0.3, v(1.0));
    assert_values(&out, |t| if t < 0.05 { 1.0 } else if t < tc { ramp(t) } else { ramp(tc) }, TOL, "cancelAndHold linear");
    Ok(())
}

#[test]
fn cancel_and_hold_during_an_exponential_ramp() -> TestResult {
    let tc = 0.2;
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.1, 0.05)?;
        p.timeline().exponential_ramp_to_value_at_time(2.0, 0.3, 0.0)?;
        p.timeline().cancel_and_hold_at_time(tc)?;
        Ok(())
    })?;
    let ramp = |t: f64| exponential(t, 0.05, v(0.1), 0.3, v(2.0));
    assert_values(&out, |t| if t < 0.05 { 1.0 } else if t < tc { ramp(t) } else { ramp(tc) }, TOL_EXP, "cancelAndHold exponential");
    Ok(())
}

#[test]
fn cancel_and_hold_during_set_target() -> TestResult {
    let tc = 0.12;
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.2, 0.0)?;
        p.timeline().set_target_at_time(1.0, 0.05, 0.04)?;
        p.timeline().set_value_at_time(0.5, 0.35)?;
        p.timeline().cancel_and_hold_at_time(tc)?;
        Ok(())
    })?;
    let st = |t: f64| target(t, 0.05, v(0.2), v(1.0), 0.04);
    assert_values(&out, |t| if t < 0.05 { v(0.2) } else if t < tc { st(t) } else { st(tc) }, TOL_EXP, "cancelAndHold setTarget");
    Ok(())
}

/// The curve keeps being sampled with its original duration up to the
/// cancel time, then holds the value there.
#[test]
fn cancel_and_hold_during_set_value_curve() -> TestResult {
    let values = [0.2f32, 1.0, -0.6, 0.4];
    let (t0, td, tc) = (0.05, 0.3, 0.17);
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_curve_at_time(&values, t0, td)?;
        p.timeline().set_value_at_time(0.9, 0.45)?;
        p.timeline().cancel_and_hold_at_time(tc)?;
        Ok(())
    })?;
    assert_values(
        &out,
        |t| if t < t0 { 1.0 } else if t < tc { curve(t, &values, t0, td) } else { curve(tc, &values, t0, td) },
        TOL,
        "cancelAndHold curve",
    );
    Ok(())
}

#[test]
fn cancel_and_hold_after_everything_ended() -> TestResult {
    // Nothing after the cancel time: no change.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.3, 0.02)?;
        p.timeline().linear_ramp_to_value_at_time(0.8, 0.1, 0.0)?;
        p.timeline().cancel_and_hold_at_time(0.25)?;
        Ok(())
    })?;
    let expected = |t: f64| if t < 0.02 { 1.0 } else if t < 0.1 { linear(t, 0.02, v(0.3), 0.1, v(0.8)) } else { v(0.8) };
    assert_values(&out, expected, TOL, "cancelAndHold after the end");
    // Later events are removed; the value holds.
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.3, 0.02)?;
        p.timeline().linear_ramp_to_value_at_time(0.8, 0.1, 0.0)?;
        p.timeline().set_value_at_time(0.1, 0.4)?;
        p.timeline().cancel_and_hold_at_time(0.25)?;
        Ok(())
    })?;
    assert_values(&out, expected, TOL, "cancelAndHold removes later events");
    // After a curve that has ended.
    let values = [0.0f32, 0.5, 0.25];
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_curve_at_time(&values, 0.05, 0.1)?;
        p.timeline().cancel_and_hold_at_time(0.3)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.05 { 1.0 } else { curve(t, &values, 0.05, 0.1) }, TOL, "cancelAndHold after a curve");
    Ok(())
}

/// k-rate: one value per render quantum, the a-rate value at its first frame.
#[test]
fn k_rate_holds_the_value_of_the_first_frame_of_each_quantum() -> TestResult {
    let a_rate = |t: f64| {
        if t < 0.4 {
            linear(t, 0.0, v(0.2), 0.4, v(1.0))
        } else if t < 0.45003 {
            v(1.0)
        } else {
            v(0.5)
        }
    };
    let out = render_offset(1.0, |p| {
        p.set_automation_rate(AutomationRate::KRate)?;
        p.timeline().set_value_at_time(0.2, 0.0)?;
        p.timeline().linear_ramp_to_value_at_time(1.0, 0.4, 0.0)?;
        p.timeline().set_value_at_time(0.5, 0.45003)?;
        Ok(())
    })?;
    for (n, &a) in out.iter().enumerate() {
        let first = n - n % RENDER_QUANTUM_SIZE;
        let e = a_rate(time(first));
        assert!((a as f64 - e).abs() <= TOL * e.abs().max(1.0), "k-rate: frame {n}: got {a}, expected {e}");
        assert_eq!(a, out[first], "k-rate: frame {n} differs from its quantum's first frame");
    }
    Ok(())
}

/// A ConstantSourceNode (offset 1) through a GainNode whose gain is automated
/// and also driven by a second ConstantSourceNode connected to it.
fn render_gain_with_param_input(rate: AutomationRate, modulator_ramp: bool) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, FRAMES, SR)?;
    let graph = ctx.graph();
    let carrier = ConstantSourceNode::new(graph, ConstantSourceOptions::default())?;
    carrier.start(graph, 0.0)?;
    let g = GainNode::new(graph, GainOptions::default())?;
    let modulator = ConstantSourceNode::new(graph, ConstantSourceOptions { offset: 0.25 })?;
    modulator.start(graph, 0.0)?;
    if modulator_ramp {
        graph.param(modulator.offset()).timeline().set_value_at_time(0.0, 0.0)?;
        graph.param(modulator.offset()).timeline().linear_ramp_to_value_at_time(1.0, 0.5, 0.0)?;
    }
    {
        let mut gain = graph.param(g.gain());
        gain.set_automation_rate(rate)?;
        gain.timeline().set_value_at_time(0.5, 0.0)?;
        gain.timeline().linear_ramp_to_value_at_time(1.5, 0.3, 0.0)?;
    }
    let dest = graph.destination();
    graph.connect(carrier.id(), 0, g.id(), 0)?;
    graph.connect(g.id(), 0, dest, 0)?;
    graph.connect_param(modulator.id(), 0, g.gain())?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

#[test]
fn audio_rate_input_is_summed_with_the_intrinsic_value() -> TestResult {
    let intrinsic = |t: f64| if t < 0.3 { linear(t, 0.0, 0.5, 0.3, 1.5) } else { 1.5 };
    let ramp = |t: f64| if t < 0.5 { linear(t, 0.0, 0.0, 0.5, 1.0) } else { 1.0 };
    // a-rate, constant input.
    let out = render_gain_with_param_input(AutomationRate::ARate, false)?;
    assert_values(&out, |t| intrinsic(t) + 0.25, TOL, "a-rate + constant input");
    // a-rate, varying input: summed every frame.
    let out = render_gain_with_param_input(AutomationRate::ARate, true)?;
    assert_values(&out, |t| intrinsic(t) + ramp(t), TOL, "a-rate + varying input");
    // k-rate: intrinsic value and input both taken at the quantum's first frame.
    for modulator_ramp in [false, true] {
        let out = render_gain_with_param_input(AutomationRate::KRate, modulator_ramp)?;
        for (n, &a) in out.iter().enumerate() {
            let t = time(n - n % RENDER_QUANTUM_SIZE);
            let e = intrinsic(t) + if modulator_ramp { ramp(t) } else { 0.25 };
            assert!((a as f64 - e).abs() <= TOL * e.abs().max(1.0), "k-rate + input ({modulator_ramp}): frame {n}: got {a}, expected {e}");
        }
    }
    Ok(())
}

/// The computed value is clamped to the nominal range [minValue, maxValue].
#[test]
fn computed_values_are_clamped_to_the_nominal_range() {
    let sr = 48000.0;
    let descriptor = |rate| AudioParamDescriptor::new("x", 0.0, -1.0, 1.0, rate);
    let mut buf = ParamBuffer::default();

    let mut state = ParamState::new(descriptor(AutomationRate::ARate));
    state.timeline.set_value_at_time(5.0, 0.0).unwrap();
    state.compute(0, sr, None, &mut buf);
    for i in 0..RENDER_QUANTUM_SIZE {
        assert_eq!(buf.at(i), 1.0, "5 clamps to 1 (frame {i})");
    }
    state.timeline.set_value_at_time(-3.0, 128.0 / sr).unwrap();
    state.compute(128, sr, None, &mut buf);
    for i in 0..RENDER_QUANTUM_SIZE {
        assert_eq!(buf.at(i), -1.0, "-3 clamps to -1 (frame {i})");
    }

    // A ramp from -2 to 2 across one quantum, clamped frame by frame.
    let mut state = ParamState::new(descriptor(AutomationRate::ARate));
    let end = 127.0 / sr;
    state.timeline.set_value_at_time(-2.0, 0.0).unwrap();
    state.timeline.linear_ramp_to_value_at_time(2.0, end, 0.0).unwrap();
    state.compute(0, sr, None, &mut buf);
    for i in 0..RENDER_QUANTUM_SIZE {
        let e = linear(i as f64 / sr, 0.0, -2.0, end, 2.0).clamp(-1.0, 1.0);
        let a = buf.at(i) as f64;
        assert!((a - e).abs() <= TOL, "clamped ramp frame {i}: got {a}, expected {e}");
    }

    // Intrinsic value plus input, then clamped.
    let mut state = ParamState::new(descriptor(AutomationRate::ARate));
    state.timeline.set_value_at_time(0.5, 0.0).unwrap();
    let input: [f32; RENDER_QUANTUM_SIZE] = std::array::from_fn(|i| i as f32 / 64.0 - 1.0);
    state.compute(0, sr, Some(&input), &mut buf);
    for i in 0..RENDER_QUANTUM_SIZE {
        let e = (0.5 + input[i] as f64).clamp(-1.0, 1.0);
        assert!((buf.at(i) as f64 - e).abs() <= TOL, "a-rate input frame {i}: got {}, expected {e}", buf.at(i));
    }

    // k-rate: the first frame's sum, clamped.
    let mut state = ParamState::new(descriptor(AutomationRate::KRate));
    state.timeline.set_value_at_time(0.5, 0.0).unwrap();
    let input = [0.75f32; RENDER_QUANTUM_SIZE];
    state.compute(0, sr, Some(&input), &mut buf);
    for i in 0..RENDER_QUANTUM_SIZE {
        assert_eq!(buf.at(i), 1.0, "k-rate 0.5 + 0.75 clamps to 1 (frame {i})");
    }
}

/// Every rejected call returns Err and leaves the timeline as it was.
#[test]
fn rejected_calls_leave_the_timeline_unchanged() -> TestResult {
    fn schedule(tl: &mut Timeline) -> TestResult {
        tl.set_value_at_time(0.2, 0.0)?;
        tl.set_value_curve_at_time(&[0.2, 1.0, 0.4], 0.1, 0.2)?;
        tl.set_value_at_time(0.7, 0.45)?;
        Ok(())
    }
    let expected = |t: f64| {
        if t < 0.1 {
            v(0.2)
        } else if t < 0.45 {
            curve(t, &[0.2, 1.0, 0.4], 0.1, 0.2)
        } else {
            v(0.7)
        }
    };
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    type Call = (&'static str, Box<dyn Fn(&mut Timeline) -> bool>);
    let calls: Vec<Call> = vec![
        ("exponential ramp to 0", Box::new(|tl: &mut Timeline| tl.exponential_ramp_to_value_at_time(0.0, 0.6, 0.0).is_err())),
        ("exponential ramp to -0", Box::new(|tl: &mut Timeline| tl.exponential_ramp_to_value_at_time(-0.0, 0.6, 0.0).is_err())),
        ("setValueAtTime negative time", Box::new(|tl: &mut Timeline| tl.set_value_at_time(1.0, -0.1).is_err())),
        ("linearRamp negative time", Box::new(|tl: &mut Timeline| tl.linear_ramp_to_value_at_time(1.0, -0.1, 0.0).is_err())),
        ("exponentialRamp negative time", Box::new(|tl: &mut Timeline| tl.exponential_ramp_to_value_at_time(1.0, -0.1, 0.0).is_err())),
        ("setTarget negative time", Box::new(|tl: &mut Timeline| tl.set_target_at_time(1.0, -0.1, 0.1).is_err())),
        ("setValueCurve negative time", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], -0.1, 0.05).is_err())),
        ("cancelScheduledValues negative time", Box::new(|tl: &mut Timeline| tl.cancel_scheduled_values(-0.1).is_err())),
        ("cancelAndHoldAtTime negative time", Box::new(|tl: &mut Timeline| tl.cancel_and_hold_at_time(-0.1).is_err())),
        ("setTarget negative time constant", Box::new(|tl: &mut Timeline| tl.set_target_at_time(1.0, 0.5, -0.01).is_err())),
        ("curve with 1 value", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.5], 0.5, 0.1).is_err())),
        ("curve with 0 values", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[], 0.5, 0.1).is_err())),
        ("curve with zero duration", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.5, 0.0).is_err())),
        ("curve with negative duration", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.5, -0.1).is_err())),
        ("setValueAtTime inside a curve", Box::new(|tl: &mut Timeline| tl.set_value_at_time(0.5, 0.2).is_err())),
        ("linearRamp ending inside a curve", Box::new(|tl: &mut Timeline| tl.linear_ramp_to_value_at_time(0.5, 0.2, 0.0).is_err())),
        ("exponentialRamp ending inside a curve", Box::new(|tl: &mut Timeline| tl.exponential_ramp_to_value_at_time(0.5, 0.2, 0.0).is_err())),
        ("setTarget inside a curve", Box::new(|tl: &mut Timeline| tl.set_target_at_time(0.5, 0.2, 0.1).is_err())),
        ("curve overlapping a curve", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.05, 0.1).is_err())),
        ("curve starting inside a curve", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.15, 0.1).is_err())),
        ("curve containing an event", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.4, 0.1).is_err())),
        ("setValueAtTime NaN", Box::new(move |tl: &mut Timeline| tl.set_value_at_time(nan, 0.5).is_err())),
        ("setValueAtTime inf", Box::new(move |tl: &mut Timeline| tl.set_value_at_time(inf, 0.5).is_err())),
        ("setValueAtTime -inf", Box::new(move |tl: &mut Timeline| tl.set_value_at_time(-inf, 0.5).is_err())),
        ("setValueAtTime NaN time", Box::new(|tl: &mut Timeline| tl.set_value_at_time(1.0, f64::NAN).is_err())),
        ("setValueAtTime inf time", Box::new(|tl: &mut Timeline| tl.set_value_at_time(1.0, f64::INFINITY).is_err())),
        ("linearRamp NaN", Box::new(move |tl: &mut Timeline| tl.linear_ramp_to_value_at_time(nan, 0.6, 0.0).is_err())),
        ("exponentialRamp inf", Box::new(move |tl: &mut Timeline| tl.exponential_ramp_to_value_at_time(inf, 0.6, 0.0).is_err())),
        ("setTarget NaN target", Box::new(move |tl: &mut Timeline| tl.set_target_at_time(nan, 0.5, 0.1).is_err())),
        ("setTarget inf time constant", Box::new(|tl: &mut Timeline| tl.set_target_at_time(1.0, 0.5, f64::INFINITY).is_err())),
        ("curve with a NaN value", Box::new(move |tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, nan, 1.0], 0.5, 0.1).is_err())),
        ("curve with NaN duration", Box::new(|tl: &mut Timeline| tl.set_value_curve_at_time(&[0.0, 1.0], 0.5, f64::NAN).is_err())),
        ("cancelScheduledValues NaN", Box::new(|tl: &mut Timeline| tl.cancel_scheduled_values(f64::NAN).is_err())),
        ("cancelAndHoldAtTime inf", Box::new(|tl: &mut Timeline| tl.cancel_and_hold_at_time(f64::INFINITY).is_err())),
    ];

    // On a bare timeline: the state (Debug) and values are unchanged.
    let mut reference = Timeline::new(1.0);
    schedule(&mut reference)?;
    let before = format!("{reference:?}");
    for (what, call) in &calls {
        let mut tl = reference.clone();
        assert!(call(&mut tl), "{what}: expected Err");
        assert_eq!(format!("{tl:?}"), before, "{what}: timeline changed");
    }

    // In a graph: all the rejected calls, then the render follows only the
    // accepted events.
    let out = render_offset(1.0, |p| {
        schedule(p.timeline())?;
        for (what, call) in &calls {
            assert!(call(p.timeline()), "{what}: expected Err");
        }
        Ok(())
    })?;
    assert_values(&out, expected, TOL, "after rejected calls");
    Ok(())
}

/// Events at the same time: later calls go after earlier ones, so the last
/// setValueAtTime at a time wins.
#[test]
fn events_at_the_same_time_apply_in_call_order() -> TestResult {
    let out = render_offset(1.0, |p| {
        p.timeline().set_value_at_time(0.3, 0.1)?;
        p.timeline().set_value_at_time(0.6, 0.1)?;
        Ok(())
    })?;
    assert_values(&out, |t| if t < 0.1 { 1.0 } else { v(0.6) }, TOL, "same-time events");
    Ok(())
}

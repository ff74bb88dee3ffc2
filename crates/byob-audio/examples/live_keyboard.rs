//! Plays notes typed on stdin (or played on a MIDI keyboard) through a live
//! graph: every note is a new oscillator and envelope, created, connected,
//! started and stopped while the context plays, and freed once it ended.
//!
//! ```text
//! cargo run --release -p byob-audio --features realtime --example live_keyboard
//! cargo run --release -p byob-audio --example live_keyboard -- --sink none
//! cargo run --release -p byob-audio --features realtime,midi --example live_keyboard -- --midi
//! ```
//!
//! Type keys of the row `a w s e d f t g y h u j k` (a piano octave from C4)
//! or MIDI note numbers, then Enter; `q` quits. `--sink none` plays on the
//! null sink (no device), for trying it without speakers.

use byob_audio::*;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

/// What reaches the control thread: a note to play, or the end.
enum Input {
    Note { key: u8, velocity: f32 },
    Quit,
}

const KEYS: &str = "awsedftgyhujk";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sink_id = if args.windows(2).any(|w| w == ["--sink", "none"]) { SinkId::None } else { SinkId::Default };
    let mut ctx = AudioContext::new(AudioContextOptions { sink_id, ..Default::default() })?;
    let (send, inputs) = mpsc::channel();
    spawn_stdin_reader(send.clone());
    #[cfg(feature = "midi")]
    let _midi = if args.iter().any(|a| a == "--midi") { Some(midi::connect(send)?) } else { None };

    // The part of the graph that stays: a lowpass and an echo.
    let bus = {
        let mut g = ctx.graph();
        let filter = BiquadFilterNode::new(&mut g, BiquadFilterOptions { frequency: 2500.0, ..Default::default() })?;
        let echo = DelayNode::new(&mut g, DelayOptions { max_delay_time: 1.0, delay_time: 0.25, ..Default::default() })?;
        let feedback = GainNode::new(&mut g, GainOptions { gain: 0.35, ..Default::default() })?;
        let destination = g.destination();
        g.connect(filter.id(), 0, destination, 0)?;
        g.connect(filter.id(), 0, echo.id(), 0)?;
        g.connect(echo.id(), 0, feedback.id(), 0)?;
        g.connect(feedback.id(), 0, echo.id(), 0)?;
        g.connect(echo.id(), 0, destination, 0)?;
        filter.id()
    };
    println!("byob live keyboard at {} Hz: type {KEYS} or MIDI note numbers, Enter to play, q to quit", ctx.sample_rate());
    let mut notes = 0u64;
    loop {
        match inputs.recv_timeout(Duration::from_millis(50)) {
            Ok(Input::Quit) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(Input::Note { key, velocity }) => {
                play_note(&mut ctx, bus, key, velocity)?;
                notes += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => ctx.poll_events(),
        }
    }
    // Let the last notes ring out.
    std::thread::sleep(Duration::from_millis(700));
    ctx.close()?;
    let capacity = ctx.render_capacity_overall();
    let freed = ctx.freed();
    println!(
        "{notes} notes; render load {:.1}% average, {:.1}% peak, {} underrun(s) in {} callbacks; {} nodes freed off the render thread",
        capacity.average_load * 100.0,
        capacity.peak_load * 100.0,
        capacity.underruns,
        capacity.callbacks,
        freed.nodes
    );
    Ok(())
}

/// One note: a sawtooth through an envelope into the bus, started now and
/// stopped after half a second; the handles are dropped, so both nodes are
/// freed once the oscillator has ended.
fn play_note(ctx: &mut AudioContext, bus: NodeId, key: u8, velocity: f32) -> Result<(), Box<dyn std::error::Error>> {
    let frequency = 440.0 * 2f32.powf((key as f32 - 69.0) / 12.0);
    // At most a quantum until the change applies, then the sink's buffer
    // and the device's own latency.
    let latency = RENDER_QUANTUM_SIZE as f64 / ctx.sample_rate() as f64 + ctx.base_latency() + ctx.output_latency();
    let mut g = ctx.graph();
    let now = g.current_time();
    let osc = OscillatorNode::new(&mut g, OscillatorOptions { type_: OscillatorType::Sawtooth, frequency, ..Default::default() })?;
    let envelope = GainNode::new(&mut g, GainOptions { gain: 0.0, ..Default::default() })?;
    g.connect(osc.id(), 0, envelope.id(), 0)?;
    g.connect(envelope.id(), 0, bus, 0)?;
    g.param(envelope.gain())
        .set_value_at_time(0.0, now)?
        .linear_ramp_to_value_at_time(0.25 * velocity, now + 0.01)?
        .set_target_at_time(0.0, now + 0.2, 0.08)?;
    osc.start(&mut g, now)?;
    osc.stop(&mut g, now + 0.6)?;
    g.release(osc.id());
    g.release(envelope.id());
    println!("note {key} at {now:.3} s (heard within {:.1} ms)", latency * 1000.0);
    Ok(())
}

fn spawn_stdin_reader(send: mpsc::Sender<Input>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            for word in line.split_whitespace() {
                if word == "q" {
                    let _ = send.send(Input::Quit);
                    return;
                }
                let keys: Vec<u8> = match word.parse::<u8>() {
                    Ok(note) if note < 128 => vec![note],
                    _ => word.chars().filter_map(|c| KEYS.find(c)).map(|k| 60 + k as u8).collect(),
                };
                for key in keys {
                    let _ = send.send(Input::Note { key, velocity: 1.0 });
                }
            }
        }
        let _ = send.send(Input::Quit);
    });
}

#[cfg(feature = "midi")]
mod midi {
    use super::Input;
    use std::sync::mpsc;

    /// Listens to the first MIDI input port: note-on messages become notes.
    pub fn connect(send: mpsc::Sender<Input>) -> Result<midir::MidiInputConnection<()>, Box<dyn std::error::Error>> {
        let input = midir::MidiInput::new("byob live keyboard")?;
        let ports = input.ports();
        let port = ports.first().ok_or("no MIDI input port is available")?;
        println!("listening to MIDI port {}", input.port_name(port)?);
        let connection = input.connect(
            port,
            "byob",
            move |_, message, _| {
                if let [status, key, velocity] = *message {
                    if status & 0xf0 == 0x90 && velocity > 0 {
                        let _ = send.send(Input::Note { key, velocity: velocity as f32 / 127.0 });
                    }
                }
            },
            (),
        )?;
        Ok(connection)
    }
}

//! AudioBuffer: planar f32 audio in memory, read from and written to WAV.

use std::path::{Path, PathBuf};

/// Sample formats for writing WAV files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SampleFormat {
    /// 32-bit IEEE float (the default: no loss).
    #[default]
    F32,
    /// 16-bit PCM.
    S16,
    /// 24-bit PCM.
    S24,
}

impl SampleFormat {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "s16" => Some(Self::S16),
            "s24" => Some(Self::S24),
            _ => None,
        }
    }

    /// Bits per sample in the WAV file.
    pub fn bits(self) -> u16 {
        match self {
            Self::F32 => 32,
            Self::S16 => 16,
            Self::S24 => 24,
        }
    }
}

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable WAV file: {source}")]
    Format { path: PathBuf, source: hound::Error },
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error(transparent)]
    Output(#[from] byob_files::OutputError),
}


/// Why an AudioBuffer could not be created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    #[error("an AudioBuffer needs at least one channel")]
    NoChannels,
    #[error("channel {channel} has {len} frames but channel 0 has {expected}")]
    RaggedChannels { channel: usize, len: usize, expected: usize },
    #[error("sampleRate {0} is not a positive finite number")]
    SampleRate(f32),
}

/// Audio in memory: equal-length channels of f32 samples at one sample rate.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioBuffer {
    sample_rate: f32,
    channels: Vec<Vec<f32>>,
}

impl AudioBuffer {
    pub fn new(sample_rate: f32, channels: Vec<Vec<f32>>) -> Result<Self, BufferError> {
        if !(sample_rate.is_finite() && sample_rate > 0.0) {
            return Err(BufferError::SampleRate(sample_rate));
        }
        let Some(first) = channels.first() else {
            return Err(BufferError::NoChannels);
        };
        let expected = first.len();
        if let Some((channel, c)) = channels.iter().enumerate().find(|(_, c)| c.len() != expected) {
            return Err(BufferError::RaggedChannels { channel, len: c.len(), expected });
        }
        Ok(Self { sample_rate, channels })
    }

    /// `channels` channels of `length` frames of silence.
    pub fn silent(channels: usize, length: usize, sample_rate: f32) -> Result<Self, BufferError> {
        Self::new(sample_rate, vec![vec![0.0; length]; channels])
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    pub fn length(&self) -> usize {
        self.channels[0].len()
    }

    pub fn duration(&self) -> f64 {
        self.length() as f64 / self.sample_rate as f64
    }

    pub fn number_of_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn channel_data(&self, channel: usize) -> &[f32] {
        &self.channels[channel]
    }

    pub fn channel_data_mut(&mut self, channel: usize) -> &mut [f32] {
        &mut self.channels[channel]
    }

    /// Reads a WAV file (PCM 8/16/24/32-bit or 32-bit float) at its own
    /// sample rate.
    pub fn from_wav(path: &Path) -> Result<Self, WavError> {
        let (file, size) = byob_files::open_regular(path).map_err(|source| WavError::Io { path: path.to_path_buf(), source })?;
        Self::read_wav(std::io::BufReader::new(file), size, path)
    }

    /// Reads WAV data of `size` bytes from `reader` (`path` names it in
    /// errors), as [`from_wav`](Self::from_wav) does.
    pub fn read_wav(reader: impl std::io::Read, size: u64, path: &Path) -> Result<Self, WavError> {
        let format_error = |source| WavError::Format { path: path.to_path_buf(), source };
        let mut reader = hound::WavReader::new(reader).map_err(|e| match e {
            hound::Error::IoError(source) => WavError::Io { path: path.to_path_buf(), source },
            other => format_error(other),
        })?;
        let spec = reader.spec();
        let channels = spec.channels as usize;
        if channels == 0 {
            return Err(WavError::Unsupported { path: path.to_path_buf(), what: "the file has no channels".into() });
        }
        let bits = spec.bits_per_sample;
        let supported = match spec.sample_format {
            hound::SampleFormat::Int => (1..=32).contains(&bits),
            hound::SampleFormat::Float => bits == 32,
        };
        if !supported {
            return Err(WavError::Unsupported { path: path.to_path_buf(), what: format!("{bits}-bit samples are not supported (PCM of 8 to 32 bits, 32-bit float)") });
        }
        // The samples the header declares must be in the file before room
        // is made for them.
        let declared = reader.len() as u64 * u64::from(spec.bits_per_sample).div_ceil(8);
        if declared > size {
            return Err(WavError::Unsupported { path: path.to_path_buf(), what: format!("the header declares {declared} bytes of samples, the file has {size} bytes") });
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>().map_err(format_error)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|s| s as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(format_error)?
            }
        };
        let frames = interleaved.len() / channels;
        let mut planar = vec![Vec::with_capacity(frames); channels];
        for frame in interleaved.chunks_exact(channels) {
            for (c, &s) in frame.iter().enumerate() {
                planar[c].push(s);
            }
        }
        Self::new(spec.sample_rate as f32, planar)
            .map_err(|e| WavError::Unsupported { path: path.to_path_buf(), what: e.to_string() })
    }

    /// Writes a WAV file, NaN and infinite samples as 0 (see
    /// [`non_finite_samples`](Self::non_finite_samples)). The data goes to
    /// a temporary file beside `path` that is renamed over it only once
    /// complete, so a failure never leaves a partial file.
    pub fn write_wav(&self, path: &Path, format: SampleFormat) -> Result<(), WavError> {
        byob_files::write_atomically(path, |file| {
            self.write_wav_to(file, format).map_err(|e| match e {
                hound::Error::IoError(source) => WavError::Io { path: path.to_path_buf(), source },
                other => WavError::Unsupported { path: path.to_path_buf(), what: other.to_string() },
            })
        })
    }

    /// How many samples are NaN or infinite, and the first frame holding
    /// one: [`write_wav`](Self::write_wav) writes them as 0.
    pub fn non_finite_samples(&self) -> Option<(usize, usize)> {
        let count: usize = self.channels.iter().map(|c| c.iter().filter(|s| !s.is_finite()).count()).sum();
        let first = (0..self.length()).find(|&i| self.channels.iter().any(|c| !c[i].is_finite()))?;
        Some((count, first))
    }

    /// Writes the WAV data to `file` (NaN and infinite samples as 0).
    pub fn write_wav_to(&self, file: &mut std::fs::File, format: SampleFormat) -> Result<(), hound::Error> {
        let bits = format.bits();
        let sample_format = if format == SampleFormat::F32 { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
        let spec = hound::WavSpec {
            channels: self.number_of_channels() as u16,
            sample_rate: self.sample_rate.round() as u32,
            bits_per_sample: bits,
            sample_format,
        };
        let mut writer = hound::WavWriter::new(std::io::BufWriter::new(file), spec)?;
        let full_scale = ((1i64 << (bits - 1)) - 1) as f32;
        for i in 0..self.length() {
            for channel in &self.channels {
                // NaN and infinities have no PCM code and break most
                // readers of float WAV files: silence, counted by
                // `non_finite_samples` for the caller to report.
                let s = if channel[i].is_finite() { channel[i] } else { 0.0 };
                match format {
                    SampleFormat::F32 => writer.write_sample(s),
                    // Round to nearest and clip, as PCM cannot hold |s| > 1.
                    _ => writer.write_sample((s.clamp(-1.0, 1.0) * full_scale).round() as i32),
                }?;
            }
        }
        writer.finalize()
    }
}

/// `channels` zeroed channels of `len` samples, or `None` when the system
/// refuses the memory: rendered buffers and delay lines are sized from
/// user input, and a size the machine cannot hold must be an error, not
/// an abort.
pub(crate) fn zeroed_channels(channels: usize, len: usize) -> Option<Vec<Vec<f32>>> {
    (0..channels)
        .map(|_| {
            let mut samples = Vec::new();
            samples.try_reserve_exact(len).ok()?;
            samples.resize(len, 0.0);
            Some(samples)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_samples_are_counted_and_written_as_silence() {
        let buffer = AudioBuffer::new(48000.0, vec![vec![0.5, f32::NAN, 0.25], vec![0.0, 0.0, f32::INFINITY]]).unwrap();
        assert_eq!(buffer.non_finite_samples(), Some((2, 1)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        buffer.write_wav(&path, SampleFormat::F32).unwrap();
        let read = AudioBuffer::from_wav(&path).unwrap();
        assert_eq!((read.channel_data(0), read.channel_data(1)), (&[0.5, 0.0, 0.25][..], &[0.0, 0.0, 0.0][..]));
        assert_eq!(read.non_finite_samples(), None);
    }

    /// Sample widths a WAV header may claim but no reader handles (found by
    /// the fuzz replay: 65-bit PCM overflowed the scale's shift).
    #[test]
    fn unsupported_sample_widths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        AudioBuffer::new(48000.0, vec![vec![0.5; 64]]).unwrap().write_wav(&path, SampleFormat::S16).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The fmt chunk's bits-per-sample field: 22 bytes into its body.
        let at = bytes.windows(4).position(|w| w == b"fmt ").unwrap() + 8 + 14;
        for bits in [0u16, 65, 200] {
            let mut crafted = bytes.clone();
            crafted[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            let Err(e) = AudioBuffer::read_wav(&crafted[..], crafted.len() as u64, &path) else { panic!("{bits}-bit samples read") };
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    /// A header that declares more samples than the file holds is refused
    /// before room is made for them.
    #[test]
    fn declared_sizes_past_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        AudioBuffer::new(48000.0, vec![vec![0.5; 64]]).unwrap().write_wav(&path, SampleFormat::S16).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // The data chunk's size field, just before its 128 bytes.
        let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 4;
        bytes[at..at + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = AudioBuffer::from_wav(&path).unwrap_err().to_string();
        assert!(e.ends_with("the header declares 2147483632 bytes of samples, the file has 172 bytes"), "{e}");
    }
}

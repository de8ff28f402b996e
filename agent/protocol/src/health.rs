//! Health kept over time: the monitor's samples, downsampled to one point a minute (kept a
//! day) and one every fifteen minutes (kept thirty days).

use serde::{Deserialize, Serialize};

/// How fine a point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// One point a minute, kept a day.
    Minute,
    /// One point every fifteen minutes, kept thirty days.
    QuarterHour,
}

impl Resolution {
    pub const ALL: [Resolution; 2] = [Resolution::Minute, Resolution::QuarterHour];

    /// The span one point covers, in milliseconds.
    pub fn span_ms(self) -> u64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::QuarterHour => 15 * 60_000,
        }
    }

    /// How long points are kept, in milliseconds.
    pub fn kept_ms(self) -> u64 {
        match self {
            Resolution::Minute => 24 * 3_600_000,
            Resolution::QuarterHour => 30 * 24 * 3_600_000,
        }
    }

    /// The resolution as one byte (a store's key prefix).
    pub fn byte(self) -> u8 {
        match self {
            Resolution::Minute => 1,
            Resolution::QuarterHour => 15,
        }
    }
}

/// The samples of one span, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthPoint {
    /// Unix milliseconds: the start of the span.
    pub at_ms: u64,
    /// Mean health score (0-100) and the worst one.
    pub score: u8,
    pub worst_score: u8,
    /// Largest resident memory of Valor, MiB.
    pub rss_mb: f32,
    /// Mean CPU use, percent of all cores.
    pub cpu_percent: f32,
    /// Largest share of the machine's memory in use, percent.
    pub system_memory_percent: f32,
    /// Most child processes at once.
    pub children: u16,
    /// Least free space on the store's filesystem, MiB (0: not measured).
    #[serde(default)]
    pub disk_free_mb: f32,
    /// Most turns waiting at once.
    #[serde(default)]
    pub queued: u16,
    /// Samples summed up.
    pub samples: u16,
}

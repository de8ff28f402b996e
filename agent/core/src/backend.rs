//! The `Backend` seam: runs one model turn and yields its events as they arrive.

use valor_protocol::{Events, TurnRequest};

/// Runs model turns. `start` returns at once; the turn's events arrive while it runs, the last
/// `Final` or `Failed`.
pub trait Backend: Send + Sync {
    fn start(&self, request: TurnRequest) -> Events;
}

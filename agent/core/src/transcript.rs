//! The text of a turn as it is written, for previews and for what a failed turn had said.
//! (The reply itself is assembled once, by the engine, from the model's whole text blocks.)

/// Text deltas joined, message by message: a model message that follows tool calls starts a
/// new paragraph.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// Earlier model messages, joined.
    done: String,
    /// The message being written.
    current: String,
}

impl Transcript {
    /// A new model message begins.
    pub fn message_start(&mut self) {
        if !self.current.is_empty() {
            self.done = joined(&self.done, &self.current);
            self.current.clear();
        }
    }

    pub fn push(&mut self, delta: &str) {
        self.current.push_str(delta);
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.current.is_empty()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        joined(&self.done, &self.current)
    }

    /// The message being written (its content decides a preview's cadence).
    pub fn current(&self) -> &str {
        &self.current
    }
}

fn joined(done: &str, current: &str) -> String {
    match (done.is_empty(), current.is_empty()) {
        (true, _) => current.to_owned(),
        (false, true) => done.to_owned(),
        (false, false) => format!("{done}\n\n{current}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_paragraphs() {
        let mut t = Transcript::default();
        assert!(t.is_empty());
        t.message_start();
        t.push("Let me ");
        t.push("look.");
        t.message_start();
        t.message_start();
        t.push("Found it.");
        assert_eq!(t.text(), "Let me look.\n\nFound it.");
        assert_eq!(t.current(), "Found it.");
    }
}

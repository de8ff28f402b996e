//! Valor learns from conversations, with the user's consent (seeds 003 and 004).
//!
//! - [`watcher`]: finds statements worth remembering in a user's message (ten trigger types,
//!   each with a confidence); only confident ones are asked about.
//! - [`classifier`]: the learned half of the watcher, a softmax regression over a message's
//!   embedding, trained offline from the labelled file.
//! - [`detector`]: the watcher as it runs, the rules and the classifier together.
//! - [`evaluate`]: precision and recall on a labelled set.
//! - [`learner`]: turns a "yes" into a learning: deduplicated by meaning (reinforcing the one
//!   it repeats), retiring what a switch replaces; lists, forgets and ranks learnings for the
//!   context of later turns.
//! - [`chat`]: [`ChatLearning`], core's `Learning` seam over the store and the learner: the
//!   questions, their answers, and the lines `/learnings`, `/forget` and `/remember` answer with.
//! - [`export`]: `LEARNED_INSIGHTS.md` per chat.
//! - [`port`]: the stores learning needs ([`LearningStore`], [`ProposalStore`]), async; sled's
//!   implementation is in valor-store, an in-memory one in [`fake`].

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod chat;
pub mod classifier;
pub mod detector;
pub mod evaluate;
pub mod export;
pub mod fake;
pub mod learner;
pub mod port;
pub mod watcher;

pub use chat::ChatLearning;
pub use learner::{Accepted, LearnError, LearnSettings, Learner};
pub use port::{LearnStore, LearningStore, ProposalStore};
pub use watcher::{Detection, Trigger, detect};

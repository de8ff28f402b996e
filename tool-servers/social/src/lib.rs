//! Valor's `social` MCP server.
//!
//! - `search_current_info(query)`: Perplexity's chat-completions API, with its sources.
//! - `create_image(prompt, chat_id)`: OpenAI's images API; the PNG is saved in the chat's
//!   workspace and handed to the agent to send as a photo.
//! - `analyze_shared_image(image_path, question, chat_id)`: OpenAI vision, after checking the
//!   file (inside the workspace, PNG/JPEG/WebP/GIF by its bytes, not too large).
//! - `save_link(url, chat_id)`: fetches the page under [`valor_tools::fetch`]'s limits, keeps
//!   its title, description and main text in memory, and answers with a short analysis.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod extract;
mod image;
mod server;
mod settings;

pub use extract::{Extracted, extract};
pub use image::{ImageKind, check_image};
pub use server::{LinkStore, SavedLink, SocialServer, UserSent};
pub use settings::SocialSettings;
pub use valor_tools::Delivery;

//! From the model's Markdown to Telegram messages: HTML with every reserved character escaped,
//! split into messages of at most 4096 characters at paragraph or code-fence boundaries, with a
//! plain-text form for when Telegram still refuses the markup.
//!
//! Telegram counts a message's length after entity parsing, in UTF-16 code units; tags do not
//! count, an escaped `&amp;` counts as one.

/// Telegram's limit for one message.
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// One message to send: its HTML and its plain-text fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub html: String,
    pub plain: String,
}

/// A block of the source: prose, or a fenced code block (fence markers removed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Prose(String),
    Code { lang: String, body: String },
}

/// Parses the source into prose and code blocks. A fence that is never closed runs to the end.
fn blocks(source: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut code: Option<(String, String)> = None;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim_start();
        match &mut code {
            None if trimmed.starts_with("```") => {
                if !prose.is_empty() {
                    out.push(Block::Prose(std::mem::take(&mut prose)));
                }
                let lang: String = trimmed[3..]
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_'))
                    .collect();
                code = Some((lang, String::new()));
            }
            None => prose.push_str(line),
            Some(_) if trimmed.trim_end() == "```" => {
                if let Some((lang, body)) = code.take() {
                    out.push(Block::Code { lang, body });
                }
            }
            Some((_, body)) => body.push_str(line),
        }
    }
    if let Some((lang, body)) = code {
        out.push(Block::Code { lang, body });
    }
    if !prose.is_empty() {
        out.push(Block::Prose(prose));
    }
    out
}

fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Escapes the three characters HTML reserves.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline Markdown in prose: `code`, **bold**, *italic*/_italic_ when balanced on the line;
/// everything else is escaped text. Unbalanced markers stay as they are.
fn prose_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&inline_html(line));
    }
    out
}

fn inline_html(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        let next = [("`", "code"), ("**", "b"), ("__", "u")]
            .iter()
            .filter_map(|(marker, tag)| {
                let start = rest.find(marker)?;
                let end = rest[start + marker.len()..].find(marker)? + start + marker.len();
                (end > start + marker.len()).then_some((start, end, *marker, *tag))
            })
            .min_by_key(|(start, ..)| *start);
        match next {
            Some((start, end, marker, tag)) => {
                out.push_str(&escape_html(&rest[..start]));
                out.push_str(&format!("<{tag}>"));
                out.push_str(&escape_html(&rest[start + marker.len()..end]));
                out.push_str(&format!("</{tag}>"));
                rest = &rest[end + marker.len()..];
            }
            None => {
                out.push_str(&escape_html(rest));
                rest = "";
            }
        }
    }
    out
}

fn code_html(lang: &str, body: &str) -> String {
    let body = escape_html(body.strip_suffix('\n').unwrap_or(body));
    if lang.is_empty() {
        format!("<pre>{body}</pre>")
    } else {
        format!("<pre><code class=\"language-{lang}\">{body}</code></pre>")
    }
}

/// Pieces of a block small enough to pack: prose splits at paragraphs, then lines, then
/// spaces, then anywhere; code splits at lines (each piece keeps the language).
fn pieces(block: &Block, limit: usize) -> Vec<Block> {
    match block {
        Block::Prose(text) => split_text(text, limit, &["\n\n", "\n", " "])
            .into_iter()
            .map(Block::Prose)
            .collect(),
        Block::Code { lang, body } => split_text(body, limit, &["\n", " "])
            .into_iter()
            .map(|body| Block::Code {
                lang: lang.clone(),
                body,
            })
            .collect(),
    }
}

/// Splits `text` into parts of at most `limit` UTF-16 units, preferring the earliest separator
/// in `separators` order; the separator stays with the left part, so nothing is lost.
fn split_text(text: &str, limit: usize, separators: &[&str]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while units(rest) > limit {
        // The longest prefix within the limit, on a char boundary.
        let mut fit = 0;
        let mut count = 0;
        for (i, c) in rest.char_indices() {
            count += c.len_utf16();
            if count > limit {
                break;
            }
            fit = i + c.len_utf8();
        }
        let window = &rest[..fit];
        let cut = separators
            .iter()
            .find_map(|sep| window.rfind(sep).map(|i| i + sep.len()).filter(|&i| i > 0))
            .unwrap_or(fit.max(rest.chars().next().map_or(1, char::len_utf8)));
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

fn visible_units(block: &Block) -> usize {
    match block {
        Block::Prose(text) => units(text),
        Block::Code { body, .. } => units(body),
    }
}

/// Renders `source` into messages of at most `limit` visible characters (use
/// [`MAX_MESSAGE_UNITS`], less a margin if you like).
pub fn render(source: &str, limit: usize) -> Vec<Chunk> {
    // Inline markers removed by rendering only shrink the text, so packing by source length is
    // safe; code fences never count.
    let mut messages: Vec<Vec<Block>> = Vec::new();
    let mut current: Vec<Block> = Vec::new();
    let mut used = 0;
    for block in blocks(source) {
        for piece in pieces(&block, limit) {
            let size = visible_units(&piece);
            if used + size > limit && !current.is_empty() {
                messages.push(std::mem::take(&mut current));
                used = 0;
            }
            used += size;
            current.push(piece);
        }
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
        .into_iter()
        .map(|blocks| {
            let mut html = String::new();
            let mut plain = String::new();
            for block in &blocks {
                match block {
                    Block::Prose(text) => {
                        html.push_str(&prose_html(text));
                        plain.push_str(text);
                    }
                    Block::Code { lang, body } => {
                        html.push_str(&code_html(lang, body));
                        plain.push_str(body);
                    }
                }
            }
            Chunk {
                html: html.trim_end().to_owned(),
                plain: plain.trim_end().to_owned(),
            }
        })
        .filter(|c| !c.plain.trim().is_empty())
        .collect()
}

/// The text a reader sees in a Telegram HTML message: tags removed, entities decoded.
pub fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
        } else {
            let (entity, len) = [
                ("&amp;", '&'),
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&quot;", '"'),
            ]
            .iter()
            .find(|(e, _)| rest.starts_with(e))
            .map_or(('&', 1), |(e, c)| (*c, e.len()));
            out.push(entity);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn non_space(text: &str) -> String {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn escapes_and_formats() {
        let chunks = render(
            "a < b && c > d, **bold** and `x<y`\n\n```rust\nfn main() { a < b }\n```\n",
            4096,
        );
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].html,
            "a &lt; b &amp;&amp; c &gt; d, <b>bold</b> and <code>x&lt;y</code>\n\n\
             <pre><code class=\"language-rust\">fn main() { a &lt; b }</code></pre>"
        );
        assert_eq!(
            chunks[0].plain,
            "a < b && c > d, **bold** and `x<y`\n\nfn main() { a < b }"
        );
    }

    #[test]
    fn a_12000_character_answer_splits_in_order_without_loss_or_repeats() {
        let paragraph = |i: usize| format!("Paragraph {i}: {}\n\n", "words of text ".repeat(40));
        let source: String = (0..25).map(paragraph).collect();
        assert!(source.len() > 12_000);
        let chunks = render(&source, MAX_MESSAGE_UNITS);
        assert!(chunks.len() >= 3);
        for chunk in &chunks {
            assert!(units(&visible_text(&chunk.html)) <= MAX_MESSAGE_UNITS);
            // Splits fall between paragraphs.
            assert!(
                chunk.plain.starts_with("Paragraph "),
                "{}",
                &chunk.plain[..20]
            );
        }
        let joined: String = chunks.iter().map(|c| visible_text(&c.html)).collect();
        assert_eq!(non_space(&joined), non_space(&source));
    }

    #[test]
    fn a_long_code_block_is_closed_and_reopened_across_messages() {
        let source = format!(
            "Here:\n```python\n{}```\nDone.",
            "print('line')\n".repeat(600)
        );
        let chunks = render(&source, MAX_MESSAGE_UNITS);
        assert!(chunks.len() >= 2);
        for chunk in &chunks[1..chunks.len() - 1] {
            assert!(
                chunk
                    .html
                    .starts_with("<pre><code class=\"language-python\">"),
                "{}",
                &chunk.html[..40]
            );
            assert!(chunk.html.ends_with("</code></pre>"));
        }
        let joined: String = chunks.iter().map(|c| visible_text(&c.html)).collect();
        let without_fences = source.replacen("```python", "", 1).replacen("```", "", 1);
        assert_eq!(non_space(&joined), non_space(&without_fences));
    }

    #[test]
    fn hostile_text_stays_within_limits_and_loses_nothing() {
        let reserved = "_*[]()~`>#+-=|{}.!<&\"'\\";
        let emoji = "😀".repeat(2600); // 10 KB, 5200 UTF-16 units
        let source = format!(
            "{reserved}\n```\nunclosed fence {reserved}\n\n{emoji}\n**unbalanced `code\n{reserved}"
        );
        let chunks = render(&source, MAX_MESSAGE_UNITS);
        for chunk in &chunks {
            let seen = visible_text(&chunk.html);
            assert!(units(&seen) <= MAX_MESSAGE_UNITS, "{} units", units(&seen));
            // Well-formed: every '<' opens a known tag.
            for tag in chunk.html.match_indices('<').map(|(i, _)| &chunk.html[i..]) {
                assert!(
                    [
                        "<pre>", "</pre>", "<code", "</code>", "<b>", "</b>", "<u>", "</u>"
                    ]
                    .iter()
                    .any(|t| tag.starts_with(t)),
                    "{}",
                    &tag[..tag.len().min(12)]
                );
            }
        }
        let joined: String = chunks.iter().map(|c| visible_text(&c.html)).collect();
        // The only markup is the opening fence; everything after it is code, shown as written.
        assert_eq!(
            non_space(&joined),
            non_space(&source.replacen("```", "", 1))
        );
        assert_eq!(joined.matches(reserved).count(), 3);
        assert_eq!(joined.matches('😀').count(), 2600);
    }

    #[test]
    fn visible_text_decodes_what_escape_encodes() {
        let text = "a<b>&c&amp;";
        assert_eq!(visible_text(&escape_html(text)), text);
    }
}

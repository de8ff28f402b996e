//! A page's title, description and main text.

use scraper::{ElementRef, Html, Node, Selector};

/// What `save_link` keeps of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub title: String,
    pub description: String,
    pub text: String,
}

/// Main text kept at most (characters).
pub const MAX_TEXT: usize = 20_000;

/// Elements whose text is never the page's content.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg", "template",
    "iframe", "button",
];

pub fn extract(html: &str, content_type: &str) -> Extracted {
    if content_type.starts_with("text/plain") {
        let text = collapse(html);
        let title = text.chars().take(80).collect();
        return Extracted {
            title,
            description: String::new(),
            text: text.chars().take(MAX_TEXT).collect(),
        };
    }
    let document = Html::parse_document(html);
    let first_text = |selector: &str| -> Option<String> {
        let selector = Selector::parse(selector).ok()?;
        document
            .select(&selector)
            .map(|e| collapse(&e.text().collect::<String>()))
            .find(|t| !t.is_empty())
    };
    let meta = |selector: &str| -> Option<String> {
        let selector = Selector::parse(selector).ok()?;
        document
            .select(&selector)
            .filter_map(|e| e.value().attr("content"))
            .map(collapse)
            .find(|t| !t.is_empty())
    };
    let title = meta("meta[property='og:title']")
        .or_else(|| first_text("title"))
        .or_else(|| first_text("h1"))
        .unwrap_or_default();
    let description = meta("meta[name='description']")
        .or_else(|| meta("meta[property='og:description']"))
        .unwrap_or_default();
    let main = ["article", "main", "[role='main']", "body"]
        .iter()
        .filter_map(|s| Selector::parse(s).ok())
        .find_map(|s| document.select(&s).next());
    let mut text = String::new();
    if let Some(root) = main {
        visible_text(root, &mut text);
    }
    Extracted {
        title,
        description,
        text: collapse(&text).chars().take(MAX_TEXT).collect(),
    }
}

fn visible_text(element: ElementRef<'_>, out: &mut String) {
    for child in element.children() {
        match child.value() {
            Node::Text(text) => {
                out.push_str(text);
            }
            Node::Element(e) if !SKIPPED.contains(&e.name()) => {
                if let Some(child) = ElementRef::wrap(child) {
                    visible_text(child, out);
                    if matches!(e.name(), "p" | "div" | "li" | "h1" | "h2" | "h3" | "br") {
                        out.push('\n');
                    }
                }
            }
            _ => {}
        }
    }
}

/// Runs of whitespace as one space (line breaks kept as one newline).
fn collapse(text: &str) -> String {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_description_and_main_text_without_scripts_or_navigation() {
        let html = r#"<html><head><title> Rust 2026 </title>
            <meta name="description" content="What changed this year.">
            <script>var tracking = 1;</script></head>
            <body><nav>Home | About</nav><article><h1>Rust 2026</h1>
            <p>The   borrow checker got <b>friendlier</b>.</p><script>x()</script></article>
            <footer>© someone</footer></body></html>"#;
        let page = extract(html, "text/html; charset=utf-8");
        assert_eq!(page.title, "Rust 2026");
        assert_eq!(page.description, "What changed this year.");
        assert!(
            page.text.contains("The borrow checker got friendlier."),
            "{}",
            page.text
        );
        for absent in ["tracking", "x()", "Home | About", "someone"] {
            assert!(!page.text.contains(absent), "{absent} in {}", page.text);
        }
    }
}

//! Daydream reports on the Jobs page: their markdown rendered as HTML that can carry nothing
//! active. A report quotes commit subjects, file names and the model's analysis, any of which
//! may be hostile, so raw HTML becomes text and links and images become their text and address.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// The report as HTML: headings, lists, tables, code and emphasis; nothing else.
pub fn render(markdown: &str) -> String {
    let mut in_link: Vec<CowStr<'_>> = Vec::new();
    let events = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .filter_map(move |event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Some(Event::Text(html)),
        Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
            in_link.push(dest_url);
            None
        }
        Event::End(TagEnd::Link | TagEnd::Image) => {
            let url = in_link.pop().unwrap_or(CowStr::Borrowed(""));
            Some(Event::Text(format!(" ({url})").into()))
        }
        other => Some(other),
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// Whether `name` is an archived report's file name (and nothing that reaches elsewhere).
pub fn is_report_name(name: &str) -> bool {
    name.starts_with("daydream_insights-")
        && name.ends_with(".md")
        && name.len() <= 200
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_renders_with_nothing_active_in_it() {
        let html = render(
            "# Insights\n\n- fix <script>alert(1)</script> now\n\n<img src=x onerror=alert(2)>\n\n\
             [click](javascript:alert(3)) ![chart](http://evil/x.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>Insights</h1>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(!html.contains("href="), "{html}");
        assert!(html.contains("click (javascript:alert(3))"), "{html}");
    }

    #[test]
    fn only_archived_report_names_pass() {
        assert!(is_report_name("daydream_insights-20261204T060000Z-3f2a.md"));
        for bad in [
            "../secrets.md",
            "daydream_insights-../../x.md",
            "daydream_insights-a/b.md",
            "daydream_insights-x.md.sh",
            "valor.api-token",
            "daydream_insights-%2e%2e.md",
        ] {
            assert!(!is_report_name(bad), "{bad}");
        }
    }
}

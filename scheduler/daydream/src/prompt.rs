//! The one analysis prompt, built from phase 3's context.

use std::fmt::Write as _;

use crate::WorkspaceContext;
use crate::analytics::Trends;

/// Changed functions listed per workspace in the prompt.
const PROMPT_CHANGED: usize = 25;
/// Characters of a workspace's map in its first daydream (about 1,500 tokens).
const FIRST_MAP_CHARS: usize = 6_000;

pub fn build(workspaces: &[WorkspaceContext], trends: &Trends) -> String {
    let mut p = String::from(
        "You are Valor's daydream: study these workspaces and Valor's own usage, and write \
         insights for the developer. Answer in Markdown with three sections: \
         \"## Insights\" (3-7 concrete observations about the code and its direction, each \
         naming files or functions), \"## Risks\" (what may break or rot), and \
         \"## Suggestions\" (next steps, most valuable first), and \"## Remember\" (at most 3 \
         short facts about these projects worth remembering in later conversations, such as \
         decisions and conventions, one per line starting with \"- \"; leave it empty if \
         nothing is). Be specific; do not restate the data.\n\n",
    );
    for ws in workspaces {
        let _ = writeln!(p, "# Workspace {} ({})", ws.name, ws.path.display());
        if let Some(git) = &ws.git {
            let _ = writeln!(
                p,
                "branch {}, {} uncommitted files, {} commits in the last 7 days",
                git.branch, git.changed_files, git.commits_last_week
            );
            for commit in git.recent_commits.iter().take(5) {
                let _ = writeln!(p, "- {} {} ({})", commit.hash, commit.subject, commit.at);
            }
        }
        if !ws.stack.is_empty() {
            let _ = writeln!(p, "stack: {}", ws.stack.join("; "));
        }
        for (language, (files, functions, lines)) in ws.code.per_language() {
            let _ = writeln!(
                p,
                "{}: {files} files, {functions} functions, {lines} lines",
                language.as_str()
            );
        }
        if ws.first {
            let outline = ws.code.outline(FIRST_MAP_CHARS);
            if !outline.is_empty() {
                let _ = writeln!(
                    p,
                    "code map (the first daydream of this workspace: its main files and their functions):"
                );
                p.push_str(&outline);
            }
        }
        if !ws.changed_functions.is_empty() {
            let _ = writeln!(p, "functions changed since the last daydream:");
            for changed in ws.changed_functions.iter().take(PROMPT_CHANGED) {
                let _ = writeln!(
                    p,
                    "- {}: {}",
                    changed.file.display(),
                    changed.function.signature
                );
            }
        }
        for problem in &ws.problems {
            let _ = writeln!(p, "note: {problem}");
        }
        p.push('\n');
    }
    let _ = writeln!(
        p,
        "# Valor's last 7 days\n{} turns in {} chats, {:.0}% succeeded, ${:.2}",
        trends.turns,
        trends.chats,
        trends.success_rate * 100.0,
        trends.cost_usd
    );
    for day in &trends.days {
        let _ = writeln!(
            p,
            "- {}: {} turns, {} failed, ${:.2}",
            day.date, day.turns, day.failed, day.cost_usd
        );
    }
    if !trends.errors.is_empty() {
        let errors: Vec<String> = trends
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(p, "errors: {}", errors.join(", "));
    }
    if !trends.tools.is_empty() {
        let tools: Vec<String> = trends
            .tools
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(p, "tools used: {}", tools.join(", "));
    }
    p
}

/// Longest memory candidate kept.
const MAX_CANDIDATE: usize = 300;

/// The analysis's "## Remember" lines: memory candidates to ask the user about (at most 3).
pub fn candidates(analysis: &str) -> Vec<String> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in analysis.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            inside = line
                .trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("remember");
            continue;
        }
        if inside && let Some(item) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
            let item = item.trim();
            if !item.is_empty() && found.len() < 3 {
                found.push(item.chars().take(MAX_CANDIDATE).collect());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::candidates;
    use crate::WorkspaceContext;
    use crate::analytics::Trends;
    use crate::codemap::{CodeMap, FileMap, FunctionInfo, Language};

    fn workspace(first: bool) -> WorkspaceContext {
        let function = |name: &str, line: usize| FunctionInfo {
            name: name.to_owned(),
            signature: format!("fn {name}()"),
            start_line: line,
            end_line: line + 2,
        };
        let file = |path: &str, functions: Vec<FunctionInfo>| FileMap {
            path: path.into(),
            language: Language::Rust,
            lines: 40,
            functions,
        };
        WorkspaceContext {
            name: "shop".to_owned(),
            path: "/w/shop".into(),
            git: None,
            stack: Vec::new(),
            code: CodeMap {
                files: vec![
                    file("src/util.rs", vec![function("pad", 1), function("trim", 5)]),
                    file("src/main.rs", vec![function("main", 1)]),
                    file(
                        "src/big.rs",
                        (0..3_000).map(|i| function(&format!("f{i}"), i)).collect(),
                    ),
                ],
            },
            changed_functions: Vec::new(),
            first,
            problems: Vec::new(),
        }
    }

    #[test]
    fn the_first_daydream_of_a_workspace_carries_its_map_within_a_budget() {
        let trends = Trends::default();
        let prompt = super::build(&[workspace(true)], &trends);
        let map = prompt.split("code map (the first daydream").nth(1).unwrap();
        assert!(
            map.contains("src/main.rs (40 lines):\n  fn main()\nsrc/big.rs"),
            "entry points first: {map}"
        );
        assert!(map.len() < super::FIRST_MAP_CHARS + 200, "{}", map.len());
        let later = super::build(&[workspace(false)], &trends);
        assert!(!later.contains("code map"), "{later}");
    }

    #[test]
    fn remember_lines_become_candidates() {
        let analysis = "## Insights\n- not this\n## Remember\n- Deploys go through CI\n* Tabs, not spaces\n\n- Third\n- Fourth is too many\n## Risks\n- not this either";
        assert_eq!(
            candidates(analysis),
            ["Deploys go through CI", "Tabs, not spaces", "Third"]
        );
        assert!(candidates("## Insights\n- only insights").is_empty());
    }
}

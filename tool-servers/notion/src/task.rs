//! Tasks read from a Notion database page, and the ones a question is about.
//!
//! Databases name their properties freely, so each field is found by type first and name
//! second: the title property; a `status` property (or a select named like status/state); the
//! people property (preferring assignee/owner); the date property (preferring due/deadline).

use serde_json::Value;

use crate::client::plain_text;

/// Lines listed at most; the rest are counted.
const MAX_LISTED: usize = 50;
const DONE: &[&str] = &[
    "done",
    "complete",
    "completed",
    "closed",
    "shipped",
    "released",
    "resolved",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub status: Option<String>,
    pub assignees: Vec<String>,
    /// `YYYY-MM-DD` (a date-time's date part).
    pub due: Option<String>,
    pub url: String,
}

impl Task {
    /// A task from a page of a database query; `None` for what is not a page.
    pub fn from_page(page: &Value) -> Option<Task> {
        if page["object"] != "page" {
            return None;
        }
        let properties = page["properties"].as_object()?;
        let of_type = |kind: &str, preferred: &[&str]| -> Option<&Value> {
            let all: Vec<(&String, &Value)> = properties
                .iter()
                .filter(|(_, p)| p["type"] == kind)
                .collect();
            all.iter()
                .find(|(name, _)| {
                    let name = name.to_lowercase();
                    preferred.iter().any(|p| name.contains(p))
                })
                .or_else(|| all.first())
                .map(|(_, p)| *p)
        };
        let title = of_type("title", &[]).map_or_else(String::new, |p| plain_text(&p["title"]));
        let status = of_type("status", &[])
            .and_then(|p| p["status"]["name"].as_str())
            .or_else(|| {
                properties
                    .iter()
                    .filter(|(name, p)| {
                        let name = name.to_lowercase();
                        p["type"] == "select" && (name.contains("status") || name.contains("state"))
                    })
                    .find_map(|(_, p)| p["select"]["name"].as_str())
            })
            .map(str::to_owned);
        let assignees = of_type("people", &["assign", "owner", "responsible"])
            .and_then(|p| p["people"].as_array())
            .map(|people| {
                people
                    .iter()
                    .filter_map(|person| person["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let due = of_type("date", &["due", "deadline", "target"])
            .and_then(|p| p["date"]["start"].as_str())
            .map(|d| d.chars().take(10).collect());
        Some(Task {
            id: page["id"].as_str().unwrap_or_default().to_owned(),
            title: if title.is_empty() {
                "(untitled)".to_owned()
            } else {
                title
            },
            status,
            assignees,
            due,
            url: page["url"].as_str().unwrap_or_default().to_owned(),
        })
    }

    pub fn is_done(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| DONE.contains(&s.to_lowercase().as_str()))
    }

    fn is_overdue(&self, today: &str) -> bool {
        !self.is_done() && self.due.as_deref().is_some_and(|due| due < today)
    }
}

/// What a question asks for, read from its words against the tasks' own statuses and names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub statuses: Vec<String>,
    pub assignees: Vec<String>,
    pub overdue: bool,
    pub open_only: bool,
}

impl TaskFilter {
    pub fn from_question(question: &str, tasks: &[Task]) -> TaskFilter {
        // Words between spaces, so "Grace?" names Grace and "late" is not found in "translate".
        let words: String = question
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '\'' {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let q = format!(
            " {} ",
            words.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let mut filter = TaskFilter::default();
        for task in tasks {
            if let Some(status) = &task.status
                && q.contains(&status.to_lowercase())
                && !filter.statuses.contains(status)
            {
                filter.statuses.push(status.clone());
            }
            for person in &task.assignees {
                let first = person.split_whitespace().next().unwrap_or(person);
                let named = q.contains(&person.to_lowercase())
                    || q.contains(&format!(" {} ", first.to_lowercase()))
                    || q.contains(&format!(" {}'s ", first.to_lowercase()));
                if named && !filter.assignees.contains(person) {
                    filter.assignees.push(person.clone());
                }
            }
        }
        filter.overdue = ["overdue", "late", "past due", "missed"]
            .iter()
            .any(|w| q.contains(w));
        filter.open_only = [
            " open ",
            "remaining",
            "not done",
            "unfinished",
            "left",
            "todo",
        ]
        .iter()
        .any(|w| q.contains(w));
        filter
    }

    fn keeps(&self, task: &Task, today: &str) -> bool {
        (self.statuses.is_empty()
            || task
                .status
                .as_ref()
                .is_some_and(|s| self.statuses.contains(s)))
            && (self.assignees.is_empty()
                || task.assignees.iter().any(|a| self.assignees.contains(a)))
            && (!self.overdue || task.is_overdue(today))
            && (!self.open_only || !task.is_done())
    }

    fn describe(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if !self.statuses.is_empty() {
            parts.push(format!("status {}", self.statuses.join(" or ")));
        }
        if !self.assignees.is_empty() {
            parts.push(format!("assigned to {}", self.assignees.join(" or ")));
        }
        if self.overdue {
            parts.push("overdue".to_owned());
        }
        if self.open_only {
            parts.push("not done".to_owned());
        }
        parts
    }
}

/// The answer: counts by status, then the tasks the filter keeps (open first, soonest due
/// first), each with status, assignees, due date and link.
pub fn render_tasks(database: &str, tasks: &[Task], filter: &TaskFilter, today: &str) -> String {
    if tasks.is_empty() {
        return format!("The Notion database {database:?} has no tasks.");
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for task in tasks {
        let status = task
            .status
            .clone()
            .unwrap_or_else(|| "no status".to_owned());
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    let mut kept: Vec<&Task> = tasks.iter().filter(|t| filter.keeps(t, today)).collect();
    kept.sort_by(|a, b| {
        a.is_done()
            .cmp(&b.is_done())
            .then_with(|| match (&a.due, &b.due) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
    let overdue = tasks.iter().filter(|t| t.is_overdue(today)).count();
    let mut out = format!(
        "{database}: {} tasks ({}){}.\n",
        tasks.len(),
        counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        if overdue > 0 {
            format!("; {overdue} overdue")
        } else {
            String::new()
        }
    );
    let described = filter.describe();
    if described.is_empty() {
        out.push_str("All tasks:\n");
    } else if kept.is_empty() {
        out.push_str(&format!("No task is {}.\n", described.join(", ")));
        return out;
    } else {
        let noun = if kept.len() == 1 { "task" } else { "tasks" };
        out.push_str(&format!(
            "{} {noun} {}:\n",
            kept.len(),
            described.join(", ")
        ));
    }
    for task in kept.iter().take(MAX_LISTED) {
        let mut line = format!(
            "- [{}] {}",
            task.status.as_deref().unwrap_or("no status"),
            task.title
        );
        if !task.assignees.is_empty() {
            line.push_str(&format!(" — {}", task.assignees.join(", ")));
        }
        if let Some(due) = &task.due {
            let late = if task.is_overdue(today) {
                ", overdue"
            } else {
                ""
            };
            line.push_str(&format!(" — due {due}{late}"));
        }
        if !task.url.is_empty() {
            line.push_str(&format!(" — {}", task.url));
        }
        line.push_str(&format!(" (id {})\n", task.id));
        out.push_str(&line);
    }
    if kept.len() > MAX_LISTED {
        out.push_str(&format!("…and {} more.\n", kept.len() - MAX_LISTED));
    }
    out
}

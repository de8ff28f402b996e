//! The conversation watcher (seed 004): finds, in a user's message, the sentences that state
//! something worth remembering, by the ten trigger types, each with a confidence.
//!
//! Rules, not a model: it runs on every message beside the turn and takes microseconds. A
//! sentence counts only when it states something: questions, hypotheticals ("if we", "maybe",
//! "might"), reported speech and quotes, negated statements and jokes are passed over, and
//! hedges ("I think", "probably") lower the confidence below the asking threshold.

use std::sync::OnceLock;

use regex::Regex;
use valor_protocol::learnings::Category;

/// The ten kinds of statement the watcher looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    Switching,
    DecidedToUse,
    NoLonger,
    NowUsing,
    ImplementChange,
    PerformanceIssue,
    BugFixed,
    ArchitectureChange,
    RejectedIdea,
    EdgeCase,
}

impl Trigger {
    pub const ALL: [Trigger; 10] = [
        Trigger::Switching,
        Trigger::DecidedToUse,
        Trigger::NoLonger,
        Trigger::NowUsing,
        Trigger::ImplementChange,
        Trigger::PerformanceIssue,
        Trigger::BugFixed,
        Trigger::ArchitectureChange,
        Trigger::RejectedIdea,
        Trigger::EdgeCase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Switching => "switching",
            Trigger::DecidedToUse => "decided_to_use",
            Trigger::NoLonger => "no_longer",
            Trigger::NowUsing => "now_using",
            Trigger::ImplementChange => "implement_change",
            Trigger::PerformanceIssue => "performance_issue",
            Trigger::BugFixed => "bug_fixed",
            Trigger::ArchitectureChange => "architecture_change",
            Trigger::RejectedIdea => "rejected_idea",
            Trigger::EdgeCase => "edge_case",
        }
    }

    pub fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The category a learning of this kind goes under.
    pub fn category(self) -> Category {
        match self {
            Trigger::Switching | Trigger::NoLonger | Trigger::NowUsing => Category::Dependency,
            Trigger::DecidedToUse | Trigger::RejectedIdea => Category::Decision,
            Trigger::ImplementChange => Category::Pattern,
            Trigger::PerformanceIssue | Trigger::BugFixed | Trigger::EdgeCase => Category::Gotcha,
            Trigger::ArchitectureChange => Category::Architecture,
        }
    }

    /// Statements that are negative by nature: a "not" in them does not undo them.
    fn is_negative(self) -> bool {
        matches!(self, Trigger::NoLonger | Trigger::RejectedIdea)
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub trigger: Trigger,
    /// 0..=1: how sure the watcher is that the sentence states this.
    pub confidence: f32,
    /// The sentence, trimmed: what would be remembered.
    pub sentence: String,
    /// What the statement leaves behind: "Bootstrap" in "switching from Bootstrap to
    /// Tailwind", "Jest" in "we no longer use Jest".
    pub replaces: Option<String>,
}

struct Rule {
    trigger: Trigger,
    confidence: f32,
    pattern: Regex,
}

/// The patterns; `(?P<old>...)` names what a statement replaces.
const RULES: &[(Trigger, f32, &str)] = &[
    (
        Trigger::Switching,
        0.95,
        r"\b(?:switch|switching|switched|migrate|migrating|migrated|move|moving|moved|port|porting|ported|changed|went|go(?:ne)?)\s+(?:\w+\s+){0,3}?from\s+(?P<old>[\w.+#-]+(?:\s+[A-Z][\w.+#-]*)?)\s+(?:over\s+)?to\s+\S+",
    ),
    (
        Trigger::Switching,
        0.9,
        r"\b(?:replace|replacing|replaced)\s+(?P<old>[\w.+#-]+(?:\s+[A-Z][\w.+#-]*)?)\s+with\s+\S+",
    ),
    (
        Trigger::Switching,
        0.85,
        r"\b(?:we|we've|we have|we're|we are|team has|team is|i've|i have)\s+(?:just\s+|now\s+|finally\s+)?(?:switched|switching|moved|moving|migrated|migrating)\s+(?:over\s+)?to\s+[\w.+#-]+",
    ),
    (
        Trigger::DecidedToUse,
        0.9,
        r"\b(?:decided|agreed|chose|chosen|picked|opted)\s+(?:to\s+(?:use|go\s+with|adopt|standardi[sz]e\s+on)|on|for)\s+\S+",
    ),
    (
        Trigger::DecidedToUse,
        0.9,
        r"\b(?:we|team|i)\s+(?:\w+\s+)?(?:chose|picked|selected|adopted)\s+[\w.+#-]+",
    ),
    (
        Trigger::DecidedToUse,
        0.85,
        r"\b(?:we're|we are|we'll|we will|i'm|i am|let's)\s+(?:be\s+)?going\s+with\s+\S+|\bsettled\s+on\s+\S+|\bwent\s+with\s+\S+",
    ),
    (
        Trigger::NoLonger,
        0.9,
        r"\bno\s+longer\s+(?:use|uses|using|need|needs|support|supports|rely\s+on|depend\s+on|run|runs)\s+(?P<old>[\w.+#-]+(?:\s+[A-Z0-9][\w.+#-]*)?)",
    ),
    (
        Trigger::NoLonger,
        0.85,
        r"\b(?:don't|do\s+not|doesn't|does\s+not|nobody|no\s+one)\s+(?:use|uses|using|need|needs)\s+(?:the\s+)?(?P<old>[\w.+#-]+(?:\s+[\w.+#-]+){0,2}?)\s+(?:\w+\s+)?anymore\b",
    ),
    (
        Trigger::NoLonger,
        0.85,
        r"\b(?:stopped|quit)\s+using\s+(?P<old>[\w.+#-]+(?:\s+[A-Z][\w.+#-]*)?)",
    ),
    (
        Trigger::NoLonger,
        0.8,
        r"\b(?:dropped|removed|deprecated|retired)\s+(?:support\s+for\s+|the\s+)?(?P<old>[A-Z][\w.+#-]*(?:\s+[\w.+#-]+)?)",
    ),
    (
        Trigger::NowUsing,
        0.85,
        r"\b(?:now|currently)\s+(?:use|uses|using|runs?\s+on|running\s+on|on|relies\s+on|rely\s+on|deploy(?:s|ed)?\s+(?:to|on))\s+\S+",
    ),
    (
        Trigger::NowUsing,
        0.85,
        r"\bfrom\s+now\s+on\b|\bgoing\s+forward\b",
    ),
    (
        Trigger::NowUsing,
        0.8,
        r"\b(?:we|team|all\s+our\s+\w+|our\s+\w+)\s+(?:use|uses)\s+\S+.*\bnow\b",
    ),
    (
        Trigger::ImplementChange,
        0.85,
        r"\bimplement\s+(?:this|that|the|these|those|our)\s+(?:\w+\s+){0,3}?(?:change|changes|fix|approach|logic|design|plan|idea|feature|pattern)\b",
    ),
    (
        Trigger::ImplementChange,
        0.85,
        r"\b(?:make|apply|do)\s+(?:this|that|the\s+same|these|those)\s+(?:\w+\s+)?changes?\b",
    ),
    (
        Trigger::ImplementChange,
        0.8,
        r"^(?:please\s+|let's\s+|go\s+ahead\s+and\s+)?implement\s+\S+",
    ),
    (
        Trigger::PerformanceIssue,
        0.9,
        r"\b(?:too|really|very|extremely|painfully|super|so|quite)\s+slow\b|\bslow(?:er)?\s+(?:query|queries|endpoint|build|builds|page|tests|startup|request)",
    ),
    (
        Trigger::PerformanceIssue,
        0.85,
        r"\b(?:take|takes|took|taking)\s+(?:about\s+|over\s+|almost\s+|around\s+)?(?:\d+(?:\.\d+)?|several|many)\s*(?:ms|milliseconds|s|sec|seconds|min|minutes|hours)\b",
    ),
    (
        Trigger::PerformanceIssue,
        0.85,
        r"\b(?:n\+1|bottleneck|memory\s+leak|high\s+cpu|latency\s+spikes?|performance\s+(?:issue|problem|regression)|timeouts?\s+under\s+load)\b",
    ),
    (
        Trigger::BugFixed,
        0.9,
        r"\b(?:fixed|resolved|patched|squashed|solved)\s+(?:a|the|this|that|our|an)\s+(?:\w+\s+){0,2}?(?:bug|issue|crash|problem|race|race\s+condition|leak|regression|error|deadlock)\b",
    ),
    (
        Trigger::BugFixed,
        0.85,
        r"\b(?:bug|issue|crash|problem|regression|error|deadlock|race)\s+(?:is|was|has\s+been|got|'s)\s+(?:now\s+|finally\s+)?(?:fixed|resolved|patched|solved)\b",
    ),
    (
        Trigger::BugFixed,
        0.85,
        r"\b(?:the\s+)?root\s+cause\s+(?:was|is)\b|\bfixed\s+it\s+by\b|\bthe\s+fix\s+(?:was|is)\b",
    ),
    (
        Trigger::ArchitectureChange,
        0.9,
        r"\b(?:refactor|refactoring|refactored|restructure|restructuring|restructured|re-?architect(?:ing|ed)?)\b\s+\S+",
    ),
    (
        Trigger::ArchitectureChange,
        0.85,
        r"\b(?:split|splitting|extract|extracted|extracting|merged|merging|broke|breaking)\s+(?:up\s+)?(?:\w+\s+){0,3}?into\s+\S+",
    ),
    (
        Trigger::ArchitectureChange,
        0.85,
        r"\barchitecture\s+is\s+now\b|\bnew\s+architecture\b|\bmoving\s+to\s+(?:microservices|a\s+monolith|event-driven|serverless)\b",
    ),
    (
        Trigger::RejectedIdea,
        0.85,
        r"^(?:please\s+)?(?:avoid|never\s+use|don't\s+use|do\s+not\s+use|stay\s+away\s+from)\s+\S+",
    ),
    (
        Trigger::RejectedIdea,
        0.85,
        r"\b(?:decided\s+against|ruled\s+(?:out|against)|rejected|vetoed|voted\s+(?:down|against)|turned\s+down|shot\s+down|passed\s+on|shelved|scrapped)\s+\S+|\b(?:voted|turned|shot)\s+(?:it|that|this)\s+down\b|\boff\s+the\s+table\b|\b(?:we\s+)?(?:won't|will\s+not|aren't\s+going\s+to|are\s+not\s+going\s+to)\s+(?:use|adopt)\s+\S+",
    ),
    (
        Trigger::RejectedIdea,
        0.8,
        r"\b(?:we\s+should|let's|better\s+to)\s+avoid\s+\S+",
    ),
    (
        Trigger::EdgeCase,
        0.85,
        r"\b(?:watch\s+out\s+for|be\s+careful\s+(?:with|about|of|when)|careful\s+with|beware\s+of|edge\s+case|corner\s+case|gotcha|pitfall|caveat)\b",
    ),
    (
        Trigger::EdgeCase,
        0.8,
        r"\b(?:keep\s+in\s+mind\s+that|note\s+that|remember\s+that|make\s+sure\s+(?:to|that|you))\b",
    ),
    (
        Trigger::EdgeCase,
        0.8,
        r"\b(?:breaks|fails|crashes|chokes)\s+(?:when|if|on)\b|\bonly\s+works\s+(?:when|if)\b",
    ),
    (
        Trigger::DecidedToUse,
        0.85,
        r"\b(?:decision\s+(?:is|was)\s+made|we've\s+decided|we\s+have\s+decided|it's\s+decided|final\s+decision)\b",
    ),
    (
        Trigger::NoLonger,
        0.85,
        r"\bno\s+longer\s+\w+\s+(?:on\s+|with\s+)?(?P<old>[A-Z][\w.+#-]*(?:\s+[A-Z0-9][\w.+#-]*)?)",
    ),
    (
        Trigger::NoLonger,
        0.85,
        r"\b(?:got\s+rid\s+of|ripped\s+out|phased\s+out|removed)\s+(?:the\s+)?(?P<old>[\w.+#-]+(?:\s+[\w.+#-]+)?)\s+(?:\w+\s+)?(?:entirely|completely|altogether|for\s+good)\b|\bgot\s+rid\s+of\s+(?:the\s+)?(?P<old2>[A-Z][\w.+#-]*)",
    ),
    (
        Trigger::NowUsing,
        0.8,
        r"\b(?:these\s+days|nowadays)\s+(?:we|our|the)\b",
    ),
    (
        Trigger::PerformanceIssue,
        0.85,
        r"\b(?:times?\s+out|timing\s+out|takes\s+(?:too\s+long|forever|ages)|went\s+from\s+\d+(?:\.\d+)?\s*(?:ms|s|seconds)\s+to\s+\d+)",
    ),
    (
        Trigger::BugFixed,
        0.85,
        r"^fixed\s+(?:the|a|an)\s+\S+|\bwas\s+caused\s+by\b|\b(?:it's|it\s+is|that's|that\s+is|it\s+was)\s+(?:now\s+)?fixed\b",
    ),
    (
        Trigger::ArchitectureChange,
        0.85,
        r"\b(?:merged|merging|folded|consolidated)\s+(?:\w+\s+){0,4}?into\s+(?:one|a\s+single|\w+)|\b(?:lives|runs)\s+in\s+its\s+own\s+(?:service|module|crate|package|process|repo)\b|\bits\s+own\s+(?:service|microservice)\b",
    ),
    (
        Trigger::RejectedIdea,
        0.8,
        r"^no\s+[\w.+#-]+\s+(?:for|in)\s+\w+",
    ),
    (
        Trigger::EdgeCase,
        0.85,
        r"^(?:careful|caution|warning|heads\s+up)\s*[:,!-]",
    ),
    (
        Trigger::EdgeCase,
        0.8,
        r"\b(?:break|breaks)\s+(?:the|our|all)\s+\w+",
    ),
    // Casual switches: "we've ditched Heroku, everything runs on Fly.io now", "moved off Redux
    // and onto Zustand".
    (
        Trigger::Switching,
        0.85,
        r"\b(?:ditched|dumped|dropped|abandoned|moved\s+off|got\s+off|moved\s+away\s+from|walked\s+away\s+from)\s+(?:of\s+)?(?:the\s+|our\s+)?(?P<old>[\w.+#-]+(?:\s+[A-Z0-9][\w.+#-]*)?)\b.{0,60}?\b(?:onto|to|for|in\s+favou?r\s+of|(?:runs?|lives?|is|are)\s+(?:on|in)\s+\S+\s+now|now\s+(?:runs?|lives?|uses?)|now\b)",
    ),
    // Decisions in casual words: "final call: the pipeline will be built on ClickHouse".
    (
        Trigger::DecidedToUse,
        0.85,
        r"\b(?:final\s+(?:call|answer|word|verdict)|the\s+verdict|it's\s+official|we're\s+set\s+on|we\s+are\s+set\s+on)\b",
    ),
    (
        Trigger::DecidedToUse,
        0.8,
        r"\b(?:will\s+be|is\s+going\s+to\s+be|are\s+going\s+to\s+be|gets?\s+to\s+be)\s+(?:built|written|done|hosted|implemented|based|run)\s+(?:on|in|with)\s+[A-Z][\w.+#-]*",
    ),
];

/// Words that make a sentence a question when it starts with them.
const QUESTION_STARTS: &[&str] = &[
    "should", "could", "would", "can", "do", "does", "did", "is", "are", "was", "were", "what",
    "why", "how", "when", "which", "who", "shall", "will", "have", "has", "any", "where", "whose",
    "may",
];

/// Requests to the assistant: a task for this turn, not a statement about the project.
const REQUEST: &str = r"^(?:please\s+|pls\s+|hey,?\s+|ok(?:ay)?,?\s+|now\s+)?(?:generate|send|check|show|write|summari[sz]e|explain|tell|look\s+at|review|run|remind|translate|convert|rewrite|rephrase|reword|draft|compose|give\s+me|list|name|suggest|recommend|calculate|compute|define|describe|compare|find|search|look\s+up|proofread|correct\s+(?:my|this|the)\s+(?:spelling|grammar|text))\b|\b(?:translate|translation\s+of)\b.{0,80}\b(?:into|to|in)\s+(?:english|german|french|spanish|italian|portuguese|dutch|russian|chinese|japanese|korean|polish|ukrainian|arabic|hindi|turkish|swedish)\b";
/// Courtesy: thanks, praise and greetings say nothing to remember about the project.
const COURTESY: &str = r"^(?:thanks|thank\s+you|thx|ty|cheers|much\s+appreciated|appreciate\s+it)\b.{0,40}$|^(?:hi|hello|hey|good\s+(?:morning|afternoon|evening|night))\b[\w\s,!.]{0,20}$|^(?:great|perfect|awesome|nice|cool|brilliant|excellent|wonderful|amazing|lovely|well\s+done|good\s+(?:job|work|stuff))(?:[\s,!.]+(?:thanks|thank\s+you|work|job|stuff|explanation|answer|one|that's\s+(?:exactly\s+)?what\s+i\s+needed))*[\s!.]*$|\b(?:thanks|thank\s+you|thx|cheers)\b[\s!.]*$|\b(?:thanks|thank\s+you)\s+(?:so\s+much\s+|a\s+lot\s+)?for\s+(?:the|your|that|this)\b.{0,30}$|^(?:that|this|it)\s+(?:was|is)\s+(?:really\s+|very\s+|super\s+)?(?:helpful|useful|great|perfect|exactly\s+what\s+i\s+needed)\b";
/// Other people's and other places' doings: another team, company or time.
const ELSEWHERE: &str = r"\b(?:my|our|his|her|their)\s+(?:previous|last|old|former)\s+(?:company|job|employer)\b|\bat\s+(?:my|our)\s+(?:previous|last|old|former)\b|^(?:their|they|our\s+(?:vendor|client|customer|competitor)s?|the\s+(?:vendor|client|customer|competitor)s?)\b|\b(?:famously|in\s+the\s+old\s+days|used\s+to)\b";

/// Hypotheticals and plans not yet made.
const HYPOTHETICAL: &str = r"\b(?:if|what\s+if|maybe|perhaps|might|could|would|wondering|considering|thinking\s+about|(?:talked|talking)\s+about\s+\w+ing|suppose|imagine|someday|one\s+day|in\s+theory|not\s+sure|whether|nothing\s+is\s+decided|undecided|not\s+decided\s+yet)\b";
/// Someone else's words.
const REPORTED: &str = r"\b(?:said|says|told\s+me|tells\s+me|according\s+to|wrote|tweeted|posted|heard\s+that|(?:the|a|this|that)\s+(?:blog|article|post|video|docs?|documentation|podcast|talk)\s+(?:says|said|claims|recommends|suggests|states)|(?:in|from)\s+(?:the|a|this|that)\s+(?:blog|article|post|video|podcast|talk)\b|claim|claims|claimed|someone\s+on|mention|mentions|mentioned)\b";
/// Jokes and sarcasm markers.
const JOKE: &str =
    r"(?:\blol\b|\blmao\b|\brofl\b|\bhaha|\bjk\b|\bjust\s+kidding\b|\bkidding\b|😂|🤣|😜|😆|/s\b)";
/// Negations that undo a positive statement when they come just before it.
const NEGATION: &str = r"\b(?:not|never|no|don't|doesn't|didn't|isn't|aren't|wasn't|weren't|haven't|hasn't|hadn't|won't|can't|cannot|neither|nor)\b";
/// Hedges: the statement stands, less firmly.
/// Quoted words (long single-quoted spans only: an apostrophe is not a quote).
const QUOTED: &str = r#""[^"]*"|“[^”]*”|‘[^’]*’|(?:^|\s)'[^']{3,}'(?:[\s.,!?;:]|$)"#;
const HEDGE: &str =
    r"\b(?:i\s+think|i\s+guess|i\s+believe|probably|kind\s+of|sort\s+of|seems\s+like|apparently)\b";

/// The compiled patterns. They are constants (a test compiles every one), so a pattern that
/// failed to compile cannot happen; were it to, that rule or filter would simply not apply.
struct Compiled {
    rules: Vec<Rule>,
    hypothetical: Option<Regex>,
    reported: Option<Regex>,
    joke: Option<Regex>,
    negation: Option<Regex>,
    hedge: Option<Regex>,
    quoted: Option<Regex>,
    request: Option<Regex>,
    courtesy: Option<Regex>,
    elsewhere: Option<Regex>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let build = |p: &str| Regex::new(&format!("(?i){p}")).ok();
        Compiled {
            rules: RULES
                .iter()
                .filter_map(|&(trigger, confidence, pattern)| {
                    Some(Rule {
                        trigger,
                        confidence,
                        pattern: build(pattern)?,
                    })
                })
                .collect(),
            hypothetical: build(HYPOTHETICAL),
            reported: build(REPORTED),
            joke: build(JOKE),
            negation: build(NEGATION),
            hedge: build(HEDGE),
            quoted: build(QUOTED),
            request: build(REQUEST),
            courtesy: build(COURTESY),
            elsewhere: build(ELSEWHERE),
        }
    })
}

fn hits(pattern: &Option<Regex>, text: &str) -> bool {
    pattern.as_ref().is_some_and(|p| p.is_match(text))
}

/// Longest sentence worth keeping as a learning; longer ones are cut at a word.
const MAX_SENTENCE: usize = 300;

/// Every finding in `text`, at most one per sentence (its most confident), best first.
pub fn detect(text: &str) -> Vec<Detection> {
    let compiled = compiled();
    let mut found: Vec<Detection> = sentences(text)
        .filter_map(|sentence| detect_sentence(compiled, sentence))
        .collect();
    found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    found
}

/// Why a sentence states nothing to remember, when it does not: too short, a question, a
/// joke, someone else's words, a hypothetical, a request, thanks or a greeting.
pub fn passed_over(sentence: &str) -> Option<&'static str> {
    let compiled = compiled();
    let trimmed = sentence.trim();
    if trimmed.split_whitespace().count() < 3 {
        return Some("too short");
    }
    let lower = trimmed.to_lowercase();
    let first = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .find(|w| !w.is_empty())
        .unwrap_or("");
    if trimmed.ends_with('?') || QUESTION_STARTS.contains(&first) && !imperative_do(&lower) {
        return Some("a question");
    }
    if hits(&compiled.joke, trimmed) {
        return Some("a joke");
    }
    if hits(&compiled.reported, trimmed) || hits(&compiled.quoted, trimmed) && quoted_only(trimmed)
    {
        return Some("someone else's words");
    }
    if hits(&compiled.hypothetical, trimmed) {
        return Some("a hypothetical");
    }
    if hits(&compiled.request, trimmed) {
        return Some("a request for this turn");
    }
    if hits(&compiled.courtesy, trimmed) {
        return Some("thanks or a greeting");
    }
    if hits(&compiled.elsewhere, trimmed) {
        return Some("about another team, place or time");
    }
    None
}

/// "Do the same for the billing module": an instruction that starts like a question.
fn imperative_do(lower: &str) -> bool {
    let mut words = lower.split_whitespace();
    words.next() == Some("do")
        && matches!(
            words
                .next()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric())),
            Some("the" | "this" | "that" | "it" | "these" | "those")
        )
}

/// A sentence that is all quotation.
fn quoted_only(sentence: &str) -> bool {
    compiled()
        .quoted
        .as_ref()
        .is_some_and(|q| q.replace_all(sentence, " ").split_whitespace().count() < 3)
}

/// Whether a negation stands in the sentence (outside quotes): "not", "never", "haven't"...
pub fn negated(sentence: &str) -> bool {
    hits(&compiled().negation, sentence)
}

/// Whether the sentence is hedged ("I think", "probably").
pub fn hedged(sentence: &str) -> bool {
    hits(&compiled().hedge, sentence)
}

fn detect_sentence(compiled: &Compiled, sentence: &str) -> Option<Detection> {
    if passed_over(sentence).is_some() {
        return None;
    }
    let trimmed = sentence.trim();
    // Words inside quotation marks are someone else's.
    let unquoted = match &compiled.quoted {
        Some(quoted) => quoted.replace_all(trimmed, " "),
        None => trimmed.into(),
    };
    let mut best: Option<Detection> = None;
    for rule in &compiled.rules {
        let Some(found) = rule.pattern.captures(&unquoted) else {
            continue;
        };
        let Some(whole) = found.get(0) else { continue };
        if !rule.trigger.is_negative() && negated_before(compiled, &unquoted, whole.start()) {
            continue;
        }
        let mut confidence = rule.confidence;
        if hits(&compiled.hedge, &unquoted) {
            confidence -= 0.2;
        }
        if best.as_ref().is_some_and(|b| b.confidence >= confidence) {
            continue;
        }
        best = Some(Detection {
            trigger: rule.trigger,
            confidence,
            sentence: cut(trimmed),
            replaces: (found.name("old").or_else(|| found.name("old2")))
                .map(|m| m.as_str().trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        });
    }
    best
}

/// A negation among the three words before `at`, or at the start of the clause it is in.
fn negated_before(compiled: &Compiled, text: &str, at: usize) -> bool {
    let before = &text[..at];
    let clause = before
        .rsplit([',', ';', ':', '-', '—'])
        .next()
        .unwrap_or(before);
    let words: Vec<&str> = clause.split_whitespace().collect();
    let near = words[words.len().saturating_sub(3)..].join(" ");
    hits(&compiled.negation, &near)
}

/// Sentences of a message: split after `.`, `!`, `?` and at line breaks; the end mark kept.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (i, &(at, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(i + 1).is_none_or(|(_, n)| n.is_whitespace());
            if matches!(c, '.' | '!' | '?') && next_is_space {
                let end = at + c.len_utf8();
                out.push(&line[start..end]);
                start = end;
            }
        }
        if start < line.len() {
            out.push(&line[start..]);
        }
    }
    out.into_iter().filter(|s| !s.trim().is_empty())
}

/// The sentence as a learning keeps it: cut at a word past [`MAX_SENTENCE`] characters.
pub fn cut(sentence: &str) -> String {
    if sentence.chars().count() <= MAX_SENTENCE {
        return sentence.to_owned();
    }
    let head: String = sentence.chars().take(MAX_SENTENCE).collect();
    let head = head.rsplit_once(' ').map_or(head.as_str(), |(h, _)| h);
    format!("{}…", head.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for (trigger, _, pattern) in RULES {
            assert!(Regex::new(pattern).is_ok(), "{trigger}: {pattern}");
        }
        assert_eq!(compiled().rules.len(), RULES.len());
        for pattern in [
            HYPOTHETICAL,
            REPORTED,
            JOKE,
            NEGATION,
            HEDGE,
            QUOTED,
            REQUEST,
            ELSEWHERE,
        ] {
            assert!(Regex::new(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn switching_names_what_it_replaces() {
        let found = detect("Big news. We're switching from Bootstrap to Tailwind next sprint!");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trigger, Trigger::Switching);
        assert_eq!(found[0].replaces.as_deref(), Some("Bootstrap"));
        assert_eq!(
            found[0].sentence,
            "We're switching from Bootstrap to Tailwind next sprint!"
        );
        assert!(found[0].confidence >= 0.9);
        let gone = detect("We no longer use Jest.");
        assert_eq!(gone[0].replaces.as_deref(), Some("Jest"));
    }

    #[test]
    fn apostrophes_are_not_quotes_but_quotes_are() {
        let found = detect("We don't use Moment.js anymore, it's all date-fns now.");
        assert_eq!(found[0].trigger, Trigger::NoLonger);
        assert_eq!(found[0].replaces.as_deref(), Some("Moment.js"));
        assert!(
            detect("Bob keeps saying 'we switched from Java to Kotlin' to everyone.").is_empty()
        );
    }

    #[test]
    fn hedges_lower_the_confidence_below_asking() {
        let found = detect("I think we're switching from Bootstrap to Tailwind.");
        assert!(found[0].confidence < 0.8, "{found:?}");
    }

    #[test]
    fn huge_and_odd_input_is_handled() {
        let huge = "We switched from A to B. ".repeat(20_000);
        let found = detect(&huge);
        assert_eq!(found.len(), 20_000);
        let long = format!("We decided to use {}", "x ".repeat(1000));
        assert!(detect(&long)[0].sentence.chars().count() <= MAX_SENTENCE + 1);
        assert!(detect("").is_empty());
        assert!(detect("🙂🙂🙂 ... !!! ???").is_empty());
    }
}

//! A deterministic corpus of chat-like sentences for memory tests and benchmarks: what people
//! tell an assistant that works on their code, their plans and their day. Built from templates
//! so thousands of distinct, realistic sentences come from a seed and no data file.

/// A small xorshift generator: the corpus must be the same on every machine and run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const PEOPLE: &[&str] = &[
    "Anna", "Ben", "Carla", "Dmitri", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Marco", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tomoko",
];
const SERVICES: &[&str] = &[
    "the billing service",
    "the login page",
    "the search API",
    "the mobile app",
    "the nightly backup job",
    "the payment webhook",
    "the Postgres replica",
    "the image resizer",
    "the Telegram bot",
    "the CI pipeline",
    "the recommendation model",
    "the invoice generator",
];
const PROBLEMS: &[&str] = &[
    "times out after thirty seconds",
    "returns a 500 error on empty carts",
    "leaks memory under load",
    "crashes when the config file is missing",
    "sends duplicate emails",
    "is slow since the last deploy",
    "drops messages longer than 4096 characters",
    "fails the TLS handshake",
    "logs passwords in plain text",
    "double charges some customers",
    "hangs when the disk is full",
    "shows the wrong time zone",
];
const ACTIONS: &[&str] = &[
    "Can you look into why",
    "Please find out why",
    "I think we should fix it because",
    "Remind me tomorrow that",
    "Write a short report on why",
    "Our users complain that",
    "Yesterday I noticed that",
    "The on-call engineer says",
];
const PLANS: &[&str] = &[
    "book a table for four at the Italian place on Friday",
    "buy a birthday present for my sister",
    "renew the passport before the trip to Lisbon",
    "call the dentist about the appointment next week",
    "pick up the kids from football practice at six",
    "order new running shoes",
    "send the quarterly numbers to the accountant",
    "water the plants while the neighbours are away",
    "prepare slides for the Monday standup",
    "cancel the gym membership",
    "find a cheap flight to Berlin in March",
    "read the chapter on distributed consensus",
];
const WHEN: &[&str] = &[
    "today",
    "tomorrow morning",
    "this weekend",
    "before the end of the month",
    "next Tuesday",
    "after lunch",
    "as soon as possible",
    "when you have time",
];
const TOPICS: &[&str] = &[
    "Rust async runtimes",
    "vector databases",
    "sourdough bread",
    "marathon training",
    "the history of Rome",
    "solar panels for a small house",
    "learning Japanese",
    "index funds",
    "chess openings",
    "home espresso machines",
    "container orchestration",
    "bird watching",
];
const QUESTIONS: &[&str] = &[
    "What is a good introduction to",
    "Give me three key facts about",
    "Summarise the main arguments around",
    "How do beginners usually get started with",
    "What are common mistakes in",
    "Recommend a book about",
];
const LINKS: &[&str] = &[
    "Saved a link about",
    "Here is an article on",
    "Bookmark this blog post about",
    "Found a good video on",
];
const FINDINGS: &[&str] = &[
    "The deploy on Thursday doubled the error rate of",
    "Most support tickets this week were about",
    "Response times improved after caching in",
    "The flaky test is caused by a race in",
    "Disk usage keeps growing because of",
    "Nobody has touched the tests of",
];

const AUDIENCES: &[&str] = &[
    "a complete beginner",
    "my team at work",
    "a ten year old",
    "someone with little time",
    "an experienced engineer",
    "my parents",
    "a job interview",
    "a weekend project",
];
const DETAILS: &[&str] = &[
    "It started after the upgrade.",
    "The logs show nothing unusual.",
    "Only customers in Europe are affected.",
    "It happens about once an hour.",
    "Restarting fixes it for a while.",
    "The dashboard is all green though.",
    "We saw the same thing last spring.",
    "Nobody changed the config recently.",
];

/// One sentence; `index` varies the shape so neighbouring sentences differ.
pub fn sentence(rng: &mut Rng, index: usize) -> String {
    let sentence = match index % 6 {
        0 => format!(
            "{} {} {}.",
            rng.pick(ACTIONS),
            rng.pick(SERVICES),
            rng.pick(PROBLEMS)
        ),
        1 => format!(
            "I need to {} {} around {}:{:02}, {} can help.",
            rng.pick(PLANS),
            rng.pick(WHEN),
            7 + rng.below(14),
            rng.below(4) * 15,
            rng.pick(PEOPLE)
        ),
        2 => format!(
            "{} {}, explained for {} in under {} words?",
            rng.pick(QUESTIONS),
            rng.pick(TOPICS),
            rng.pick(AUDIENCES),
            50 + rng.below(46) * 10
        ),
        3 => format!(
            "{} told me that {} {}, can you check {}?",
            rng.pick(PEOPLE),
            rng.pick(SERVICES),
            rng.pick(PROBLEMS),
            rng.pick(WHEN)
        ),
        4 => format!(
            "{} {}, recommended by {} for {}.",
            rng.pick(LINKS),
            rng.pick(TOPICS),
            rng.pick(PEOPLE),
            rng.pick(AUDIENCES)
        ),
        _ => format!(
            "{} {}; {} wants a fix {}.",
            rng.pick(FINDINGS),
            rng.pick(SERVICES),
            rng.pick(PEOPLE),
            rng.pick(WHEN)
        ),
    };
    // Every other problem report carries a detail and a ticket number, as real ones do.
    if matches!(index % 6, 0 | 3) {
        format!(
            "{sentence} {} Ticket #{}.",
            rng.pick(DETAILS),
            1000 + rng.below(9000)
        )
    } else {
        sentence
    }
}

/// `count` sentences from `seed`, the same on every run.
pub fn sentences(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count).map(|i| sentence(&mut rng, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_varied() {
        let a = sentences(7, 3000);
        assert_eq!(a, sentences(7, 3000));
        let distinct: std::collections::HashSet<&String> = a.iter().collect();
        assert!(distinct.len() > 2900, "{} distinct", distinct.len());
        assert_ne!(a, sentences(8, 3000));
    }
}

//! What tokens cost: the one place a run's usage becomes dollars while it runs (the CLI's own
//! `total_cost_usd` comes only with its result). Priced as Claude Code prices them (measured
//! against its `total_cost_usd`): input and output by the model's price, cache writes at 1.25
//! times input, cache reads at a tenth of input; a model no price names is priced as the
//! biggest one (Claude Code prices an unknown model as Opus).

use std::collections::BTreeMap;

use crate::turn::Usage;

/// Dollars per million tokens, `[input, output]`, by a word of the model's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    by_word: BTreeMap<String, [f64; 2]>,
    /// For a model no word matches.
    fallback: [f64; 2],
}

impl Prices {
    /// `fallback_word` names the price of models no word matches (`[routing] biggest_model`);
    /// without it, the dearest configured price.
    pub fn new(by_word: BTreeMap<String, [f64; 2]>, fallback_word: &str) -> Prices {
        let dearest = by_word
            .values()
            .copied()
            .fold([0.0, 0.0], |a: [f64; 2], b| if b[1] > a[1] { b } else { a });
        let fallback = by_word
            .iter()
            .find(|(word, _)| !word.is_empty() && fallback_word.contains(word.as_str()))
            .map_or(dearest, |(_, price)| *price);
        Prices { by_word, fallback }
    }

    /// Anthropic's published prices of the current models (haiku, sonnet, opus), unknown
    /// models as opus: `[routing] prices`' default.
    pub fn published() -> Prices {
        Prices::new(
            BTreeMap::from([
                ("haiku".to_owned(), [1.0, 5.0]),
                ("sonnet".to_owned(), [3.0, 15.0]),
                ("opus".to_owned(), [5.0, 25.0]),
            ]),
            "opus",
        )
    }

    /// The price of `model`: the longest configured word it contains (`sonnet` in
    /// `claude-sonnet-4-5`), else the fallback.
    pub fn of(&self, model: &str) -> [f64; 2] {
        let model = model.to_ascii_lowercase();
        self.by_word
            .iter()
            .filter(|(word, _)| !word.is_empty() && model.contains(word.as_str()))
            .max_by_key(|(word, _)| word.len())
            .map_or(self.fallback, |(_, price)| *price)
    }

    /// Dollars for `usage` on `model`.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        cost_at(self.of(model), usage)
    }
}

/// Dollars for `usage` at `[input, output]` dollars per million tokens.
pub fn cost_at(price: [f64; 2], usage: &Usage) -> f64 {
    let [input, output] = price;
    (usage.input_tokens as f64 * input
        + usage.cache_creation_input_tokens as f64 * input * 1.25
        + usage.cache_read_input_tokens as f64 * input / 10.0
        + usage.output_tokens as f64 * output)
        / 1e6
}

/// Every token of `usage`, the unit of caps under a subscription login.
pub fn tokens_of(usage: &Usage) -> u64 {
    usage.input_tokens
        + usage.output_tokens
        + usage.cache_creation_input_tokens
        + usage.cache_read_input_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices::published()
    }

    #[test]
    fn priced_as_claude_code_prices_them() {
        // The figures Claude Code 2.1.197 reported for these tokens (its `total_cost_usd`).
        let usage = Usage {
            input_tokens: 100_000,
            output_tokens: 20_000,
            cache_read_input_tokens: 50_000,
            cache_creation_input_tokens: 10_000,
        };
        let p = prices();
        assert!((p.cost("claude-sonnet-5", &usage) - 0.6525).abs() < 1e-9);
        assert!((p.cost("claude-opus-4-8", &usage) - 1.0875).abs() < 1e-9);
        assert!((p.cost("claude-haiku-4-5-20251001", &usage) - 0.2175).abs() < 1e-9);
        // An unknown model costs what the biggest does.
        assert!((p.cost("foo-model", &usage) - 1.0875).abs() < 1e-9);
        assert_eq!(tokens_of(&usage), 180_000);
    }

    #[test]
    fn without_the_fallback_word_the_dearest_price_is_used() {
        let p = Prices::new(
            BTreeMap::from([
                ("haiku".to_owned(), [1.0, 5.0]),
                ("x".to_owned(), [2.0, 9.0]),
            ]),
            "",
        );
        assert_eq!(p.of("unknown"), [2.0, 9.0]);
        assert_eq!(p.of("HAIKU-4"), [1.0, 5.0]);
    }
}

//! What the social server needs from the configuration.

use valor_tools::fetch::FetchPolicy;
use valor_tools::http::CallPolicy;

#[derive(Debug, Clone)]
pub struct SocialSettings {
    pub perplexity_base_url: String,
    pub perplexity_key: Option<String>,
    pub perplexity_model: String,
    pub openai_base_url: String,
    pub openai_key: Option<String>,
    pub image_model: String,
    pub vision_model: String,
    /// Images larger than this are not sent for analysis.
    pub max_image_bytes: u64,
    pub calls: CallPolicy,
    pub links: FetchPolicy,
}

impl Default for SocialSettings {
    fn default() -> Self {
        SocialSettings {
            perplexity_base_url: "https://api.perplexity.ai".to_owned(),
            perplexity_key: None,
            perplexity_model: "sonar".to_owned(),
            openai_base_url: "https://api.openai.com/v1".to_owned(),
            openai_key: None,
            image_model: "gpt-image-1".to_owned(),
            vision_model: "gpt-4o-mini".to_owned(),
            max_image_bytes: 20 * 1024 * 1024,
            calls: CallPolicy::default(),
            links: FetchPolicy::default(),
        }
    }
}

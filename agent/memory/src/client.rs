//! The client side of the memory API ([`crate::api`]) and the agent's other token-guarded
//! routes (`/jobs`, `/telegram/paired`): while `valor run` owns the store, other `valor`
//! commands reach it through the running agent.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A client of the running agent; errors are messages for the user.
pub struct AgentClient {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl AgentClient {
    /// The running agent that owns the store at `store_path` (it records its address and
    /// token beside the store); `fallback_url` when it recorded no address.
    pub fn for_store(
        store_path: &Path,
        fallback_url: String,
        timeout: Duration,
    ) -> Result<AgentClient, String> {
        let token = valor_config::tokens::api_token(store_path).map_err(|e| {
            format!("the store is in use by a running Valor, and its API token cannot be read: {e}")
        })?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AgentClient {
            base: valor_config::tokens::api_url(store_path).unwrap_or(fallback_url),
            token,
            client,
        })
    }

    /// The running agent's address (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }

    /// POSTs `body` as it is (an import's JSONL, or nothing).
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, String> {
        self.send(self.client.post(format!("{}{path}", self.base)).body(body))
            .await
    }

    /// The body of a GET as it is (an export's JSONL).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, String> {
        let response = (self.client.get(format!("{}{path}", self.base)))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the running Valor at {}: {e}", self.base))?;
        if !response.status().is_success() {
            return Err(format!("the running Valor answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok(body.to_vec())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the running Valor at {}: {e}", self.base))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            return Err(format!("the running Valor answered {status}: {message}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer from Valor: {e}"))
    }
}

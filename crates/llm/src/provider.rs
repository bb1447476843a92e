//! One interface over the chat APIs Nightshift speaks, and what they share: configuration,
//! errors, timeouts and retries with backoff.

use crate::chat::{ChatRequest, ChatResponse};
use crate::redact::redact;
use std::time::Duration;

/// A chat model that can call tools.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// One round: the conversation so far in, the model's answer out. `deadline` bounds the
    /// whole call, retries included.
    async fn chat(
        &self,
        request: &ChatRequest,
        deadline: tokio::time::Instant,
    ) -> Result<ChatResponse, LlmError>;

    /// The model's name, for reports.
    fn model(&self) -> &str;
}

/// Which API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// `POST {base}/chat/completions` with `Authorization: Bearer KEY`: OpenAI, Ollama
    /// (`http://localhost:11434/v1`), vLLM, llama.cpp's server, LiteLLM.
    OpenAi,
    /// Azure OpenAI: `base` is the deployment's URL, the key goes in `api-key` and the API
    /// version in the query.
    Azure,
    /// `POST {base}/v1/messages` with `x-api-key`.
    Anthropic,
}

/// How to reach a model.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ApiKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as the provider wants it; never logged.
    pub api_key: Option<String>,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// Per HTTP request.
    pub timeout: Duration,
    /// Further attempts after a failure that may pass (timeouts, 429, 5xx).
    pub retries: u32,
    /// Ask for the answer as a stream of server-sent events.
    pub stream: bool,
}

impl ProviderConfig {
    /// The client for this configuration.
    pub fn build(&self) -> Result<Box<dyn LlmProvider>, LlmError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(LlmError::Config(
                "no TLS crypto provider is installed; install one (rustls' ring) at start-up"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(match self.kind {
            ApiKind::OpenAi | ApiKind::Azure => {
                Box::new(crate::openai::OpenAiCompatible::new(self.clone(), http))
            }
            ApiKind::Anthropic => Box::new(crate::anthropic::Anthropic::new(self.clone(), http)),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM configuration: {0}")]
    Config(String),
    /// The provider refused the request; retrying the same request will not help.
    #[error("the LLM provider answered {status}: {message}")]
    Rejected { status: u16, message: String },
    /// The provider failed or could not be reached, and retries did not help.
    #[error("the LLM provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the LLM call ran past its deadline")]
    Deadline,
    /// The answer was not in the provider's documented shape.
    #[error("the LLM provider's answer cannot be read: {0}")]
    BadAnswer(String),
}

/// What one HTTP attempt gave.
enum Attempt {
    Answer(reqwest::Response),
    /// Worth another try, after at least this long (from `Retry-After`, when given).
    Retry(String, Option<Duration>),
}

/// Sends the request `build` makes, with retries: exponential backoff from 500 ms (or the
/// server's `Retry-After`, capped at 30 s), never past `deadline`. A success is the response;
/// a refusal that retrying cannot help is an error at once.
pub(crate) async fn send(
    retries: u32,
    deadline: tokio::time::Instant,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, LlmError> {
    let mut attempt = 0u32;
    loop {
        let outcome =
            tokio::time::timeout_at(deadline, async { classify(build().send().await).await })
                .await
                .map_err(|_| LlmError::Deadline)??;
        let (why, after) = match outcome {
            Attempt::Answer(r) => return Ok(r),
            Attempt::Retry(why, after) => (why, after),
        };
        if attempt >= retries {
            return Err(LlmError::Unavailable(why));
        }
        let backoff = Duration::from_millis(500u64 << attempt.min(6));
        let wait = after.unwrap_or(backoff).min(Duration::from_secs(30));
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(LlmError::Unavailable(format!(
                "{why}; no time left to retry before the deadline"
            )));
        }
        tracing::warn!(attempt, reason = %why, "LLM call failed; retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// A whole JSON answer, read before `deadline`.
pub(crate) async fn read_json(
    response: reqwest::Response,
    deadline: tokio::time::Instant,
) -> Result<serde_json::Value, LlmError> {
    tokio::time::timeout_at(deadline, response.json())
        .await
        .map_err(|_| LlmError::Deadline)?
        .map_err(|e| LlmError::BadAnswer(format!("not JSON ({e})")))
}

/// The `data:` payloads of a server-sent event stream whose bytes arrive in chunks split
/// anywhere, inside a line or inside a UTF-8 character. Comments, `event:` lines and the blank
/// lines between events carry nothing the answer needs.
#[derive(Default)]
pub(crate) struct SseData {
    pending: Vec<u8>,
}

impl SseData {
    /// The payloads completed by the next bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            out.extend(sse_data(&line));
        }
        out
    }

    /// The payload of a last line the stream did not end with a newline.
    pub(crate) fn finish(&mut self) -> Option<String> {
        sse_data(&std::mem::take(&mut self.pending))
    }
}

fn sse_data(line: &[u8]) -> Option<String> {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("data:")
        .map(|d| d.trim().to_string())
}

/// A streamed answer being put back together from its events.
pub(crate) trait StreamedAnswer: Default {
    fn sse(&mut self) -> &mut SseData;

    /// Takes one event's data.
    fn event(&mut self, data: &str) -> Result<(), LlmError>;

    /// The answer the events made, once the stream has ended.
    fn answer(self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Takes the next bytes of the stream.
    fn push(&mut self, bytes: &[u8]) -> Result<(), LlmError> {
        for data in self.sse().push(bytes) {
            self.event(&data)?;
        }
        Ok(())
    }

    fn into_response(mut self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if let Some(data) = self.sse().finish() {
            self.event(&data)?;
        }
        self.answer(request)
    }
}

/// Reads a streamed answer chunk by chunk to its end, never past `deadline`.
pub(crate) async fn read_stream<A: StreamedAnswer>(
    mut response: reqwest::Response,
    deadline: tokio::time::Instant,
    request: &ChatRequest,
) -> Result<ChatResponse, LlmError> {
    let mut answer = A::default();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| LlmError::Deadline)?
            .map_err(|e| LlmError::Unavailable(format!("the stream broke off: {e}")))?;
        match chunk {
            Some(bytes) => answer.push(&bytes)?,
            None => return answer.into_response(request),
        }
    }
}

/// Classifies one sent request: a success to read, a failure worth retrying, or a refusal.
async fn classify(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Attempt, LlmError> {
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => {
            return Ok(Attempt::Retry(redact(&e.to_string()), None));
        }
        Err(e) => return Err(LlmError::Unavailable(redact(&e.to_string()))),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(Attempt::Answer(response));
    }
    let after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    let message = redact(&snippet(&body, 300));
    // 429 rate limit, 5xx server trouble, 529 Anthropic overloaded.
    if status.as_u16() == 429 || status.is_server_error() {
        Ok(Attempt::Retry(format!("{status}: {message}"), after))
    } else {
        Err(LlmError::Rejected {
            status: status.as_u16(),
            message,
        })
    }
}

/// At most `max` characters of `text`, marked when cut.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

//! The provider-neutral shape of a chat with tools: what goes to a model and what comes back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    /// What the model said, and the tools it asked to run.
    Assistant {
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answering the call with the same id.
    Tool {
        tool_call_id: String,
        name: String,
        content: String,
    },
}

impl Message {
    /// The text of the message, whatever its role.
    pub fn text(&self) -> &str {
        match self {
            Message::System { content }
            | Message::User { content }
            | Message::Assistant { content, .. }
            | Message::Tool { content, .. } => content,
        }
    }
}

/// A tool the model may call: a name, what it does and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON object (an empty object when the model gave none or bad JSON
    /// that could not be read; the tool then says what it misses).
    pub arguments: Value,
}

/// A request to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    /// At most this many tokens in the answer.
    pub max_tokens: u32,
    /// A tool the model must call in this answer; `None` leaves the choice to the model.
    pub force_tool: Option<String>,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    Done,
    /// It asked for tool calls.
    ToolCalls,
    /// It ran out of its token allowance.
    Length,
    Other,
}

/// Tokens a request used, as the provider counted them (or estimated when it did not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub stop: StopReason,
    pub usage: Usage,
}

/// A rough token count for text a provider did not count: four characters a token, the usual
/// rule of thumb for English and JSON.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A rough token count of a prompt: its messages (with a few tokens of framing each) and the
/// tools' descriptions and schemas.
pub(crate) fn estimate_prompt(messages: &[Message], tools: &[ToolSpec]) -> u64 {
    let messages: u64 = messages.iter().map(|m| estimate_tokens(m.text()) + 4).sum();
    let tools: u64 = tools
        .iter()
        .map(|t| estimate_tokens(&t.description) + estimate_tokens(&t.parameters.to_string()))
        .sum();
    messages + tools
}

/// Usage when the provider reported none: estimated from the request and the answer.
pub(crate) fn estimated_usage(request: &ChatRequest, content: &str, calls: &[ToolCall]) -> Usage {
    let completion = estimate_tokens(content)
        + calls
            .iter()
            .map(|c| estimate_tokens(&c.arguments.to_string()) + estimate_tokens(&c.name))
            .sum::<u64>();
    Usage {
        prompt_tokens: estimate_prompt(&request.messages, &request.tools),
        completion_tokens: completion,
    }
}

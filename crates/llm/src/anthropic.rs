//! Anthropic's Messages API (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`),
//! with tool use. The system prompt goes in its own field; consecutive messages of one role are
//! merged, since the API wants user and assistant turns to alternate; tool results travel as
//! `tool_result` blocks of a user turn.

use crate::chat::{ChatRequest, ChatResponse, Message, StopReason, Usage};
use crate::provider::{LlmError, LlmProvider, ProviderConfig, read_json, send};
use crate::quirks;
use serde_json::{Value, json};

/// The API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    config: ProviderConfig,
    http: reqwest::Client,
}

impl Anthropic {
    pub fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }
}

/// The request body in the Messages API's shape.
pub(crate) fn body(model: &str, request: &ChatRequest) -> Value {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &request.messages {
        let (role, blocks) = match m {
            Message::System { content } => {
                system.push(content.clone());
                continue;
            }
            Message::User { content } => ("user", vec![json!({"type": "text", "text": content})]),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if !content.trim().is_empty() {
                    blocks.push(json!({"type": "text", "text": content}));
                }
                for c in tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": "(no answer)"}));
                }
                ("assistant", blocks)
            }
            Message::Tool {
                tool_call_id,
                content,
                ..
            } => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content}),
                ],
            ),
        };
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "temperature": 0,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        if let Some(name) = &request.force_tool {
            body["tool_choice"] = json!({"type": "tool", "name": name});
        }
    }
    body
}

/// Reads an answer of the Messages API.
pub(crate) fn parse_answer(request: &ChatRequest, v: &Value) -> Result<ChatResponse, LlmError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::BadAnswer("no `content` list in the answer".into()))?;
    let mut content = String::new();
    let mut calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                calls.push(quirks::tool_call(
                    b.get("id").and_then(Value::as_str),
                    i,
                    name,
                    b.get("input").unwrap_or(&Value::Null),
                ));
            }
            _ => {}
        }
    }
    let usage = v
        .get("usage")
        .and_then(|u| {
            Some(Usage {
                prompt_tokens: u.get("input_tokens")?.as_u64()?,
                completion_tokens: u.get("output_tokens")?.as_u64()?,
            })
        })
        .unwrap_or_else(|| crate::chat::estimated_usage(request, &content, &calls));
    let stop = match v.get("stop_reason").and_then(Value::as_str) {
        _ if !calls.is_empty() => StopReason::ToolCalls,
        Some("end_turn" | "stop_sequence") | None => StopReason::Done,
        Some("max_tokens") => StopReason::Length,
        Some(_) => StopReason::Other,
    };
    Ok(ChatResponse {
        content,
        tool_calls: calls,
        stop,
        usage,
    })
}

#[async_trait::async_trait]
impl LlmProvider for Anthropic {
    async fn chat(
        &self,
        request: &ChatRequest,
        deadline: tokio::time::Instant,
    ) -> Result<ChatResponse, LlmError> {
        let body = body(&self.config.model, request);
        let url = format!("{}/v1/messages", self.config.base_url);
        let key = self.config.api_key.clone().ok_or_else(|| {
            LlmError::Config("Anthropic needs an API key (llm.api_key_env)".into())
        })?;
        let response = send(self.config.retries, deadline, || {
            self.http
                .post(&url)
                .header("x-api-key", &key)
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&body)
        })
        .await?;
        parse_answer(request, &read_json(response, deadline).await?)
    }

    fn model(&self) -> &str {
        &self.config.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ToolCall, ToolSpec};

    #[test]
    fn turns_alternate_and_tool_results_are_user_blocks() {
        let r = ChatRequest {
            messages: vec![
                Message::System {
                    content: "be brief".into(),
                },
                Message::User {
                    content: "why?".into(),
                },
                Message::Assistant {
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "toolu_1".into(),
                        name: "get_topology".into(),
                        arguments: json!({}),
                    }],
                },
                Message::Tool {
                    tool_call_id: "toolu_1".into(),
                    name: "get_topology".into(),
                    content: "{}".into(),
                },
                Message::User {
                    content: "conclude".into(),
                },
            ],
            tools: vec![ToolSpec {
                name: "get_topology".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 50,
            force_tool: None,
        };
        let b = body("claude", &r);
        assert_eq!(b["system"], "be brief");
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{b}");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["type"], "text");
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    }

    #[test]
    fn tool_use_blocks_are_read() {
        let r = ChatRequest {
            messages: vec![],
            tools: vec![],
            max_tokens: 1,
            force_tool: None,
        };
        let v = json!({"content": [{"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_2", "name": "promql_query", "input": {"query": "up"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 12, "output_tokens": 4}});
        let a = parse_answer(&r, &v).unwrap();
        assert_eq!(a.stop, StopReason::ToolCalls);
        assert_eq!(a.tool_calls[0].arguments, json!({"query": "up"}));
        assert_eq!(a.usage.total(), 16);
    }
}

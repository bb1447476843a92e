//! Anthropic's Messages API (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`),
//! with tool use. The system prompt goes in its own field; consecutive messages of one role are
//! merged, since the API wants user and assistant turns to alternate; tool results travel as
//! `tool_result` blocks of a user turn. Streamed answers (`"stream": true`) arrive as the API's
//! named events and are put back together into the message they describe.

use crate::chat::{ChatRequest, ChatResponse, Message, StopReason, Usage};
use crate::provider::{
    LlmError, LlmProvider, ProviderConfig, SseData, StreamedAnswer, read_json, read_stream, send,
};
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
pub(crate) fn body(model: &str, request: &ChatRequest, stream: bool) -> Value {
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
    if stream {
        body["stream"] = json!(true);
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

/// A streamed answer put back together: `message_start` (input tokens), then per content
/// block a `content_block_start` and its deltas (`text_delta`, or `input_json_delta` fragments
/// of a tool's input), `message_delta` (stop reason, output tokens) and `message_stop`. An
/// `error` event mid-stream (e.g. `overloaded_error`) fails the call.
#[derive(Default)]
pub(crate) struct StreamAssembly {
    sse: SseData,
    blocks: Vec<Value>,
    /// Each block's tool input as streamed: fragments of one JSON text.
    inputs: Vec<String>,
    stop_reason: Option<Value>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    done: bool,
}

impl StreamAssembly {
    /// The block at `index`, the list grown to hold it (bounded: an index is the API's, not
    /// a length to trust).
    fn slot(&mut self, event: &Value) -> usize {
        let i = event
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(64) as usize;
        if self.blocks.len() <= i {
            self.blocks.resize(i + 1, Value::Null);
            self.inputs.resize(i + 1, String::new());
        }
        i
    }
}

impl StreamedAnswer for StreamAssembly {
    fn sse(&mut self) -> &mut SseData {
        &mut self.sse
    }

    fn event(&mut self, data: &str) -> Result<(), LlmError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::BadAnswer(format!("a streamed event is not JSON ({e})")))?;
        let tokens =
            |u: Option<&Value>, key: &str| u.and_then(|u| u.get(key)).and_then(Value::as_u64);
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                let usage = v.get("message").and_then(|m| m.get("usage"));
                self.input_tokens = tokens(usage, "input_tokens").or(self.input_tokens);
                self.output_tokens = tokens(usage, "output_tokens").or(self.output_tokens);
            }
            "content_block_start" => {
                let i = self.slot(&v);
                self.blocks[i] = v.get("content_block").cloned().unwrap_or(Value::Null);
            }
            "content_block_delta" => {
                let i = self.slot(&v);
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let block = &mut self.blocks[i];
                        let so_far = block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let joined = format!("{so_far}{}", text("text"));
                        if block.is_null() {
                            *block = json!({"type": "text"});
                        }
                        block["text"] = Value::String(joined);
                    }
                    Some("input_json_delta") => self.inputs[i].push_str(text("partial_json")),
                    _ => {} // thinking and signature deltas: not part of the answer
                }
            }
            "message_delta" => {
                if let Some(r) = v.get("delta").and_then(|d| d.get("stop_reason")) {
                    self.stop_reason = Some(r.clone());
                }
                self.output_tokens = tokens(v.get("usage"), "output_tokens").or(self.output_tokens);
                self.input_tokens = tokens(v.get("usage"), "input_tokens").or(self.input_tokens);
            }
            "message_stop" => self.done = true,
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
                let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
                return Err(LlmError::Unavailable(format!(
                    "{kind} mid-stream: {message}"
                )));
            }
            _ => {} // ping, content_block_stop
        }
        Ok(())
    }

    fn answer(self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if !self.done {
            return Err(LlmError::BadAnswer(
                "the stream ended before the answer was complete".into(),
            ));
        }
        let mut content = Vec::new();
        for (mut block, input) in self.blocks.into_iter().zip(self.inputs) {
            if block.get("type").and_then(Value::as_str) == Some("tool_use")
                && !input.trim().is_empty()
            {
                // Kept as text when it is not JSON: the quirks read what they can of it.
                block["input"] = serde_json::from_str(&input).unwrap_or(Value::String(input));
            }
            if !block.is_null() {
                content.push(block);
            }
        }
        let mut message = json!({"content": content, "stop_reason": self.stop_reason});
        if let (Some(i), Some(o)) = (self.input_tokens, self.output_tokens) {
            message["usage"] = json!({"input_tokens": i, "output_tokens": o});
        }
        parse_answer(request, &message)
    }
}

#[async_trait::async_trait]
impl LlmProvider for Anthropic {
    async fn chat(
        &self,
        request: &ChatRequest,
        deadline: tokio::time::Instant,
    ) -> Result<ChatResponse, LlmError> {
        let body = body(&self.config.model, request, self.config.stream);
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
        if self.config.stream {
            return read_stream::<StreamAssembly>(response, deadline, request).await;
        }
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
        let b = body("claude", &r, false);
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

    /// A stream in the documented event sequence: text, then a tool_use whose input arrives
    /// as JSON fragments, split into chunks at arbitrary bytes (inside a multi-byte character
    /// too).
    const STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking the d\\u00e9ploy \\u2192 \"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ré-run\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"promql_query\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\": \\\"rate(\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"errors[5m])\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![],
            tools: vec![],
            max_tokens: 100,
            force_tool: None,
        }
    }

    #[test]
    fn a_stream_is_put_back_together_from_chunks_split_anywhere() {
        for size in [1, 3, 7, 64, STREAM.len()] {
            let mut a = StreamAssembly::default();
            for chunk in STREAM.as_bytes().chunks(size) {
                a.push(chunk).unwrap();
            }
            let r = a.into_response(&request()).unwrap();
            assert_eq!(
                r.content, "Checking the déploy → ré-run",
                "chunks of {size}"
            );
            assert_eq!(r.stop, StopReason::ToolCalls);
            assert_eq!(r.tool_calls.len(), 1);
            assert_eq!(r.tool_calls[0].id, "toolu_9");
            assert_eq!(
                r.tool_calls[0].arguments,
                json!({"query": "rate(errors[5m])"})
            );
            assert_eq!(r.usage.prompt_tokens, 25);
            assert_eq!(r.usage.completion_tokens, 89);
        }
    }

    #[test]
    fn a_stream_cut_short_or_failing_midway_is_an_error() {
        let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
        let mut a = StreamAssembly::default();
        a.push(cut.as_bytes()).unwrap();
        assert!(matches!(
            a.into_response(&request()),
            Err(LlmError::BadAnswer(_))
        ));
        let mut a = StreamAssembly::default();
        let failed = a.push(
            b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
        );
        assert!(
            matches!(&failed, Err(LlmError::Unavailable(m)) if m.contains("overloaded_error")),
            "{failed:?}"
        );
    }
}

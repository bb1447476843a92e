//! OpenAI-compatible chat completions (`POST {base}/chat/completions`), plain or streamed.
//!
//! Written over `reqwest` and `serde_json::Value` rather than a typed client: the servers this
//! must work with (llama.cpp, vLLM, Ollama, LiteLLM, small local models behind them) differ in
//! what they send, and a typed client rejects an answer that a lenient reader can still use.
//! Requests avoid what some servers refuse (`content: null` on an assistant message).

use crate::chat::{ChatRequest, ChatResponse, Message, StopReason, ToolCall, Usage};
use crate::provider::{
    ApiKind, LlmError, LlmProvider, ProviderConfig, SseData, StreamedAnswer, read_json,
    read_stream, send,
};
use crate::quirks;
use serde_json::{Value, json};

pub struct OpenAiCompatible {
    config: ProviderConfig,
    http: reqwest::Client,
}

impl OpenAiCompatible {
    pub fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    fn url(&self) -> String {
        let mut url = format!("{}/chat/completions", self.config.base_url);
        if self.config.kind == ApiKind::Azure {
            let version = self.config.api_version.as_deref().unwrap_or("2024-10-21");
            url.push_str("?api-version=");
            url.push_str(version);
        }
        url
    }
}

/// The request body in the chat-completions shape.
pub(crate) fn body(model: &str, request: &ChatRequest, stream: bool) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message).collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": 0,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters,
                }})
            })
            .collect();
        body["tool_choice"] = match &request.force_tool {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => json!("auto"),
        };
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn message(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            // An empty string, never null: some servers refuse `content: null`.
            let mut v = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function", "function": {
                            "name": c.name, "arguments": c.arguments.to_string(),
                        }})
                    })
                    .collect();
            }
            v
        }
        Message::Tool {
            tool_call_id,
            name,
            content,
        } => {
            json!({"role": "tool", "tool_call_id": tool_call_id, "name": name, "content": content})
        }
    }
}

fn stop_reason(finish: Option<&str>, has_calls: bool) -> StopReason {
    match finish {
        _ if has_calls => StopReason::ToolCalls,
        Some("tool_calls" | "function_call") => StopReason::ToolCalls,
        Some("length") => StopReason::Length,
        Some("stop") | None => StopReason::Done,
        Some(_) => StopReason::Other,
    }
}

fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    Some(Usage {
        prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
        completion_tokens: u.get("completion_tokens").and_then(Value::as_u64)?,
    })
}

/// Reads a non-streamed answer.
pub(crate) fn parse_answer(request: &ChatRequest, v: &Value) -> Result<ChatResponse, LlmError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| LlmError::BadAnswer("no `choices[0]` in the answer".into()))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| LlmError::BadAnswer("no `choices[0].message` in the answer".into()))?;
    let content = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let calls: Vec<ToolCall> = msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let f = c.get("function")?;
                    let name = f.get("name")?.as_str()?;
                    let id = c.get("id").and_then(Value::as_str);
                    Some(quirks::tool_call(
                        id,
                        i,
                        name,
                        f.get("arguments").unwrap_or(&Value::Null),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    finish(
        request,
        content,
        calls,
        choice.get("finish_reason").and_then(Value::as_str),
        usage(v),
    )
}

/// The answer once read: tool calls written into the content are taken as calls, and usage
/// is estimated when the server gave none.
fn finish(
    request: &ChatRequest,
    mut content: String,
    mut calls: Vec<ToolCall>,
    finish: Option<&str>,
    usage: Option<Usage>,
) -> Result<ChatResponse, LlmError> {
    if calls.is_empty()
        && let Some(found) = quirks::calls_in_content(&content, &request.tools)
    {
        calls = found;
        content.clear();
    }
    let usage = usage.unwrap_or_else(|| crate::chat::estimated_usage(request, &content, &calls));
    Ok(ChatResponse {
        stop: stop_reason(finish, !calls.is_empty()),
        content,
        tool_calls: calls,
        usage,
    })
}

/// A tool call as its fragments arrive.
#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// A streamed answer put back together: content deltas appended, tool calls assembled by
/// their index from fragments of name and arguments.
#[derive(Default)]
pub(crate) struct StreamAssembly {
    content: String,
    calls: Vec<PartialCall>,
    finish: Option<String>,
    usage: Option<Usage>,
    sse: SseData,
    done: bool,
}

impl StreamedAnswer for StreamAssembly {
    fn sse(&mut self) -> &mut SseData {
        &mut self.sse
    }

    fn event(&mut self, data: &str) -> Result<(), LlmError> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::BadAnswer(format!("a streamed event is not JSON ({e})")))?;
        if let Some(u) = usage(&v) {
            self.usage = Some(u);
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(());
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(());
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.content.push_str(text);
        }
        for (n, call) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .map_or(n, |i| i as usize)
                .min(64);
            if self.calls.len() <= index {
                self.calls.resize_with(index + 1, PartialCall::default);
            }
            let slot = &mut self.calls[index];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                slot.id = Some(id.to_string());
            }
            if let Some(f) = call.get("function") {
                if let Some(name) = f.get("name").and_then(Value::as_str) {
                    slot.name.push_str(name);
                }
                match f.get("arguments") {
                    Some(Value::String(part)) => slot.arguments.push_str(part),
                    Some(v @ Value::Object(_)) => slot.arguments.push_str(&v.to_string()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn answer(self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if !self.done && self.finish.is_none() {
            return Err(LlmError::BadAnswer(
                "the stream ended before the answer was complete".into(),
            ));
        }
        let calls = self
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty())
            .map(|(i, c)| {
                quirks::tool_call(
                    c.id.as_deref(),
                    i,
                    &c.name,
                    &Value::String(c.arguments.clone()),
                )
            })
            .collect();
        finish(
            request,
            self.content,
            calls,
            self.finish.as_deref(),
            self.usage,
        )
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiCompatible {
    async fn chat(
        &self,
        request: &ChatRequest,
        deadline: tokio::time::Instant,
    ) -> Result<ChatResponse, LlmError> {
        let body = body(&self.config.model, request, self.config.stream);
        let url = self.url();
        let response = send(self.config.retries, deadline, || {
            let req = self.http.post(&url).json(&body);
            match (&self.config.api_key, self.config.kind) {
                (Some(key), ApiKind::Azure) => req.header("api-key", key),
                (Some(key), _) => req.bearer_auth(key),
                (None, _) => req,
            }
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
    use crate::chat::ToolSpec;

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![Message::User {
                content: "why?".into(),
            }],
            tools: vec![ToolSpec {
                name: "get_topology".into(),
                description: "the call graph".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            max_tokens: 100,
            force_tool: None,
        }
    }

    #[test]
    fn assistant_messages_never_carry_null_content() {
        let mut r = request();
        r.messages.push(Message::Assistant {
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "get_topology".into(),
                arguments: json!({}),
            }],
        });
        let b = body("m", &r, false);
        assert_eq!(b["messages"][1]["content"], json!(""));
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["arguments"],
            json!("{}")
        );
    }

    #[test]
    fn a_tool_call_with_a_trailing_colon_and_string_arguments_is_read() {
        let v = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_topology:", "arguments": "{\"a\": 1}"}}
        ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}});
        let a = parse_answer(&request(), &v).unwrap();
        assert_eq!(a.tool_calls[0].name, "get_topology");
        assert_eq!(a.tool_calls[0].arguments, json!({"a": 1}));
        assert_eq!(a.stop, StopReason::ToolCalls);
        assert_eq!(a.usage.total(), 15);
    }

    #[test]
    fn a_tool_call_written_as_json_in_the_content_is_taken_as_a_call() {
        let v = json!({"choices": [{"message": {"content":
            "```json\n{\"name\": \"get_topology\", \"arguments\": {}}\n```"}, "finish_reason": "stop"}]});
        let a = parse_answer(&request(), &v).unwrap();
        assert_eq!(a.tool_calls.len(), 1);
        assert_eq!(a.stop, StopReason::ToolCalls);
        assert!(a.usage.total() > 0, "usage is estimated when not given");
    }

    #[test]
    fn a_stream_is_reassembled_from_fragments_split_anywhere() {
        let events = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c9\",\"function\":{\"name\":\"get_topo\",\"arguments\":\"{\\\"x\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"logy\",\"arguments\":\":2}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut s = StreamAssembly::default();
        for chunk in events.as_bytes().chunks(7) {
            s.push(chunk).unwrap();
        }
        let a = s.into_response(&request()).unwrap();
        assert_eq!(a.content, "Hello");
        assert_eq!(a.tool_calls[0].id, "c9");
        assert_eq!(a.tool_calls[0].name, "get_topology");
        assert_eq!(a.tool_calls[0].arguments, json!({"x": 2}));
        assert_eq!(a.usage.total(), 10);
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let mut s = StreamAssembly::default();
        s.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n")
            .unwrap();
        assert!(matches!(
            s.into_response(&request()),
            Err(LlmError::BadAnswer(_))
        ));
    }
}

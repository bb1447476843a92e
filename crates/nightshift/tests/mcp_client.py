"""A real MCP client (the official Python SDK) driving Nightshift for the tests in mcp.rs.

usage: mcp_client.py MODE INCIDENT http URL
       mcp_client.py MODE INCIDENT stdio COMMAND [ARG...]

MODE is the SDK's connect mode: "auto" (discover, the 2026-07-28 protocol) or "legacy" (the
initialize handshake). Prints one JSON object of what the server answered; exits non-zero
with the error when a call fails unexpectedly.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def run(mode, incident, kind, target):
    server = target[0] if kind == "http" else StdioServerParameters(command=target[0], args=target[1:])
    out = {}
    async with Client(server, mode=mode, read_timeout_seconds=60) as client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name if client.server_info else None
        out["instructions"] = client.instructions
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        out["read_only"] = all(t.annotations and t.annotations.read_only_hint for t in tools.tools)
        out["schemas"] = {t.name: t.input_schema for t in tools.tools}

        topology = await client.call_tool("get_topology", {})
        out["topology"] = json.loads(text_of(topology))
        got = await client.call_tool("get_incident", {"id": incident})
        out["incident"] = {"is_error": got.is_error, "value": json.loads(text_of(got))}
        answer = await client.call_tool("ask", {"question": "why is checkout failing?"})
        out["ask"] = {"is_error": answer.is_error, "value": json.loads(text_of(answer))}
        changes = await client.call_tool("get_changes", {"service": "checkout", "minutes": 60})
        out["changes"] = text_of(changes)
        missing = await client.call_tool("get_incident", {"id": "inc-9999"})
        out["missing_incident"] = {"is_error": missing.is_error, "text": text_of(missing)}
        no_question = await client.call_tool("ask", {})
        out["ask_without_question"] = {"is_error": no_question.is_error, "text": text_of(no_question)}
        try:
            await client.call_tool("rm_rf", {})
            out["unknown_tool"] = "accepted"
        except MCPError as e:
            out["unknown_tool"] = str(e)

        resources = await client.list_resources()
        out["resources"] = [r.uri for r in resources.resources]
        templates = await client.list_resource_templates()
        out["templates"] = [t.uri_template for t in templates.resource_templates]
        read = await client.read_resource(f"nightshift://incidents/{incident}")
        out["resource"] = json.loads(read.contents[0].text)
        out["resource_mime"] = read.contents[0].mime_type
        try:
            await client.read_resource("nightshift://incidents/inc-9999")
            out["missing_resource"] = "accepted"
        except MCPError as e:
            out["missing_resource"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    mode, incident, kind, *target = sys.argv[1:]
    asyncio.run(run(mode, incident, kind, target))

"""One small driver per official SDK for the tool-call round trip: ask with a tool, get the
calls back, answer them, get the final text. Streaming drivers rebuild the calls from events."""

import json

import anthropic
import openai
from google import genai
from google.genai import types

QUESTION = "What is the weather in Paris and in Rome?"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class OpenAIClient:
    def __init__(self, gateway, key):
        self.sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
        self.tools = [{"type": "function", "function": {"name": "get_weather",
                                                        "description": "Weather in a city",
                                                        "parameters": SCHEMA}}]

    def ask(self, model, stream):
        self.messages = [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": QUESTION}]
        calls = self._call(model, stream)[1]
        self.messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in calls]})
        return calls

    def answer(self, model, stream, results):
        for (call_id, _, _), result in zip(self.calls, results, strict=True):
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        return self._call(model, stream)[0]

    def _call(self, model, stream):
        kwargs = {"model": model, "messages": self.messages, "tools": self.tools}
        if not stream:
            message = self.sdk.chat.completions.create(**kwargs).choices[0].message
            calls = [(c.id, c.function.name, json.loads(c.function.arguments))
                     for c in message.tool_calls or []]
            self.calls = calls or getattr(self, "calls", [])
            return message.content, calls
        text, parts = "", {}
        for chunk in self.sdk.chat.completions.create(stream=True, **kwargs):
            delta = chunk.choices[0].delta if chunk.choices else None
            text += (delta.content or "") if delta else ""
            for fragment in (delta.tool_calls or []) if delta else []:
                entry = parts.setdefault(fragment.index, ["", "", ""])
                entry[0] = fragment.id or entry[0]
                entry[1] = (fragment.function.name or entry[1]) if fragment.function else entry[1]
                entry[2] += (fragment.function.arguments or "") if fragment.function else ""
        calls = [(i, n, json.loads(a)) for i, n, a in (parts[k] for k in sorted(parts))]
        self.calls = calls or getattr(self, "calls", [])
        return text, calls


class AnthropicClient:
    def __init__(self, gateway, key):
        self.sdk = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
        self.tools = [{"name": "get_weather", "description": "Weather in a city",
                       "input_schema": SCHEMA}]

    def ask(self, model, stream):
        self.messages = [{"role": "user", "content": QUESTION}]
        message = self._call(model, stream)
        content = [b.model_dump(exclude_none=True) for b in message.content]
        self.messages.append({"role": "assistant", "content": content})
        self.calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
        return self.calls

    def answer(self, model, stream, results):
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "content": result}
            for (call_id, _, _), result in zip(self.calls, results, strict=True)]})
        message = self._call(model, stream)
        return "".join(b.text for b in message.content if b.type == "text")

    def _call(self, model, stream):
        kwargs = {"model": model, "max_tokens": 200, "system": "Answer briefly.",
                  "messages": self.messages, "tools": self.tools}
        if not stream:
            return self.sdk.messages.create(**kwargs)
        with self.sdk.messages.stream(**kwargs) as events:
            return events.get_final_message()


class GeminiClient:
    def __init__(self, gateway, key):
        self.sdk = genai.Client(api_key=key, http_options=types.HttpOptions(
            base_url=gateway, retry_options=types.HttpRetryOptions(attempts=1)))
        self.config = types.GenerateContentConfig(
            system_instruction="Answer briefly.",
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
                name="get_weather", description="Weather in a city",
                parameters_json_schema=SCHEMA)])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))

    def ask(self, model, stream):
        self.contents = [types.Content(role="user", parts=[types.Part(text=QUESTION)])]
        parts = self._call(model, stream)
        self.contents.append(types.Content(role="model", parts=parts))
        self.calls = [(p.function_call.id, p.function_call.name, p.function_call.args)
                      for p in parts if p.function_call]
        return self.calls

    def answer(self, model, stream, results):
        self.contents.append(types.Content(role="user", parts=[
            types.Part(function_response=types.FunctionResponse(
                id=call_id, name=name, response={"output": result}))
            for (call_id, name, _), result in zip(self.calls, results, strict=True)]))
        return "".join(p.text or "" for p in self._call(model, stream) if p.text)

    def _call(self, model, stream):
        if not stream:
            reply = self.sdk.models.generate_content(model=model, contents=self.contents,
                                                     config=self.config)
            return reply.candidates[0].content.parts
        parts = []
        for chunk in self.sdk.models.generate_content_stream(model=model, contents=self.contents,
                                                             config=self.config):
            content = chunk.candidates[0].content if chunk.candidates else None
            parts += (content.parts or []) if content else []
        return parts


CLIENTS = {"openai": OpenAIClient, "anthropic": AnthropicClient, "gemini": GeminiClient}

"""Chat templates that can hold the crop tool, and the response template that reads its calls back.

Qwen2-VL and Qwen2.5-VL ship a chat template that drops `tools`, `tool_calls` and `tool` messages,
so a crop call and the crop image it returns could not be rendered. `QWEN_VL_TOOL_TEMPLATE` is that
template with Qwen2.5's tool block (the same `# Tools` system text and `<tool_call>` /
`<tool_response>` layout Qwen3-VL uses), rendering images in tool messages. It is prefix-preserving,
which TRL's multi-turn GRPO requires. Qwen3-VL's own template already handles tools and is kept.

`RESPONSE_TEMPLATE` is what `tokenizer.parse_response` (and so TRL) uses to split generated text into
content and tool calls; TRL's Qwen3 parser would swallow a call made inside `<think>` into the
reasoning, and our think/answer turns call the crop tool while thinking.
"""

from __future__ import annotations

from typing import Any

_CONTENT = (
    "{%- if content is string %}{{- content }}{%- else %}{%- for part in content %}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'video' or 'video' in part %}"
    "{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in part %}{{- part['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
)

QWEN_VL_TOOL_TEMPLATE = (
    "{%- set image_count = namespace(value=0) %}{%- set video_count = namespace(value=0) %}"
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set content = messages[0]['content'] %}" + _CONTENT
    + "{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- set content = message['content'] if message['content'] is not none else '' %}"
    "{%- if message['role'] == 'system' and loop.first and tools %}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}" + _CONTENT + "{{- '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' }}" + _CONTENT
    + "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- set f = call['function'] if call['function'] is defined else call %}"
    "{%- if content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + f['name'] + '\", \"arguments\": ' }}"
    "{%- if f['arguments'] is string %}{{- f['arguments'] }}{%- else %}{{- f['arguments'] | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# transformers' response-template parser: free text, then any number of `<tool_call>` JSON blocks.
RESPONSE_TEMPLATE: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {
            "open": "<tool_call>",
            "close_pattern": r"</tool_call>\s*",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}


def renders_tools(processor: Any) -> bool:
    """Whether the processor's chat template renders a tool schema, a tool call and a tool message with an image."""
    schema = {"type": "function", "function": {"name": "probe_tool", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ""}],
         "tool_calls": [{"type": "function", "function": {"name": "probe_tool", "arguments": {"probe_arg": 1}}}]},
        {"role": "tool", "name": "probe_tool", "content": [{"type": "image"}]},
    ]
    try:
        text = processor.apply_chat_template(messages, tools=[schema], tokenize=False)
    except Exception:  # a template that refuses tools raises whatever its author raised
        return False
    return all(s in text for s in ("probe_tool", "probe_arg", "<tool_response>", "<|image_pad|>"))


def use_tool_template(processor: Any) -> Any:
    """Give the processor a chat template that renders the crop tool (kept if it already does) and the
    response template that parses its calls. Returns the processor; `save_pretrained` then saves both."""
    if not renders_tools(processor):
        processor.chat_template = QWEN_VL_TOOL_TEMPLATE
        if getattr(processor.tokenizer, "chat_template", None) is not None:
            processor.tokenizer.chat_template = QWEN_VL_TOOL_TEMPLATE
    processor.tokenizer.response_template = RESPONSE_TEMPLATE
    return processor

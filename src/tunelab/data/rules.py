"""The rules OpenAI's fine-tuning API enforces on a chat example, as a table plus one checker.

Each rule has a short stable code (used in --json output and tests) and a sentence that
names the fix. `example_errors` checks one parsed example; file-level rules (too few
examples) and warnings that need the whole file (duplicates, context length) live in
tunelab.data.check.
"""

from __future__ import annotations

# code -> what is wrong and how to fix it. Order is the order a user meets them.
ERRORS: dict[str, str] = {
    "invalid_utf8": "the line is not valid UTF-8; re-save the file as UTF-8",
    "invalid_json": "not valid JSON; a .jsonl file holds one JSON object per line",
    "not_an_object": "an example must be a JSON object like {\"messages\": [...]}",
    "missing_messages": "the example has no \"messages\" list",
    "empty_messages": "the \"messages\" list is empty",
    "message_not_object": "each message must be an object with role and content",
    "missing_role": "a message has no \"role\"",
    "missing_content": "a message has no \"content\"",
    "unrecognized_key": "a message carries a key OpenAI rejects",
    "unrecognized_role": "a message has a role OpenAI rejects",
    "content_not_string": "message content must be a string",
    "no_assistant_message": "the example has no assistant message to learn from",
    "blank_assistant_content": "an assistant message has empty content",
    "invalid_weight": "\"weight\" must be 0 or 1",
    "too_few_examples": "OpenAI needs at least 10 training examples",
}

WARNINGS: dict[str, str] = {
    "no_system_message": "no system message; the model learns without the persona prompt",
    "duplicate_example": "exact duplicate of an earlier example",
    "over_context_limit": "longer than the model's context; the end gets cut in training",
    "ends_with_user": "the last turn is the user's; nothing after it is learned",
}

ALLOWED_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"})
ALLOWED_ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
MIN_EXAMPLES = 10


def example_errors(example: object) -> list[tuple[str, str]]:
    """Every (code, message) this example breaks; an empty list means OpenAI accepts it."""
    if not isinstance(example, dict):
        return [("not_an_object", f"got a JSON {json_kind(example)}; {ERRORS['not_an_object']}")]
    messages = example.get("messages")
    if not isinstance(messages, list):
        return [("missing_messages", ERRORS["missing_messages"])]
    if not messages:
        return [("empty_messages", ERRORS["empty_messages"])]
    found: list[tuple[str, str]] = []
    has_assistant = False
    for index, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            found.append(("message_not_object", f"message {index}: {ERRORS['message_not_object']}"))
            continue
        role, content = message.get("role"), message.get("content")
        if role == "assistant":
            has_assistant = True
            blank = not content or type(content) is str and content.isspace()
        else:
            blank = False
        # Most messages are exactly {role, content}: skip the full scan for them.
        if len(message) != 2 or type(content) is not str or role not in ALLOWED_ROLES or blank:
            found.extend(message_errors(message, f"message {index}"))
    if not has_assistant:
        found.append(("no_assistant_message", ERRORS["no_assistant_message"]))
    return found


def message_errors(message: dict, where: str) -> list[tuple[str, str]]:
    """The slow path: everything wrong with one message, each prefixed with `where`
    ("message 3", "preferred_output")."""
    role = message.get("role")
    calls = message.get("tool_calls") or message.get("function_call")
    found: list[tuple[str, str]] = []
    if "role" not in message:
        found.append(("missing_role", f"{where}: {ERRORS['missing_role']}"))
    elif role not in ALLOWED_ROLES:
        found.append(("unrecognized_role", f"{where}: role {short(role)} is not one of "
                      "system, user, assistant, tool, function"))
    unknown = sorted(str(key) for key in message if key not in ALLOWED_KEYS)
    if unknown:
        found.append(("unrecognized_key", f"{where}: {', '.join(map(repr, unknown))} not allowed; "
                      "use role, content, name, weight, tool_calls, function_call"))
    if "content" not in message and not calls:
        found.append(("missing_content", f"{where}: {ERRORS['missing_content']}"))
    elif "content" in message and not isinstance(message["content"], str) \
            and not (message["content"] is None and calls):
        found.append(("content_not_string", f"{where}: content is a JSON "
                      f"{json_kind(message['content'])}; {ERRORS['content_not_string']}"))
    elif role == "assistant" and not calls and not str(message.get("content") or "").strip():
        found.append(("blank_assistant_content", f"{where}: {ERRORS['blank_assistant_content']}"))
    weight = message.get("weight", 0)
    if type(weight) is not int or weight not in (0, 1):  # bools and 1.0 are rejected too
        found.append(("invalid_weight", f"{where}: weight is {short(weight)}; "
                      f"{ERRORS['invalid_weight']}"))
    return found


def json_kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

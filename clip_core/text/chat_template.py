"""Chat templates: transformers 4.57's ``apply_chat_template`` for CLIP's two tokenizers.

A chat template is a Jinja template that turns a conversation (a list of ``{"role": ..., "content": ...}`` messages)
into one string. transformers' rules, which this module follows:

- the template runs in Jinja's *immutable sandbox* with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols``
  extension (``{% break %}`` / ``{% continue %}``), a ``tojson`` filter that does not HTML-escape (and takes
  ``indent``, ``separators``, ``sort_keys``, ``ensure_ascii``), and two globals: ``raise_exception(message)`` (a
  ``jinja2.TemplateError``) and ``strftime_now(format)`` (the local time now);
- the template sees ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the tokenizer's special tokens
  (``bos_token``, ``eos_token``, ...) and every extra keyword of the call;
- ``{% generation %} ... {% endgeneration %}`` marks the text the assistant wrote: with
  ``return_assistant_tokens_mask=True`` the tokens of that text get 1 in ``assistant_masks`` (read through
  ``char_to_token``, so only the fast class can, as in transformers);
- ``continue_final_message=True`` cuts the rendered text right after the final message's content, so a model can go
  on writing it (the template may trim the message's trailing spaces).

Jinja 3.1 or newer is needed (``pip install jinja2``, or triclip's ``chat`` extra); it is imported on first use.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import logging
import re
from datetime import datetime
from typing import Any, Callable, Sequence

logger = logging.getLogger("clip_core.tokenizer")

#: appended to the final message's text under continue_final_message, to find where that text ends once rendered
_END_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
#: the render in progress on this thread / task: (the text pieces rendered so far, the generation spans found)
_TRACKING: contextvars.ContextVar[tuple[list[str], list[tuple[int, int]]] | None] = contextvars.ContextVar(
    "clip_core_chat_tracking", default=None)
_warned: set[str] = set()

NO_TEMPLATE = (
    "Cannot use chat template functions because tokenizer.chat_template is not set and no template argument was "
    "passed! For information about writing templates and setting the tokenizer.chat_template attribute, please see "
    "the documentation at https://huggingface.co/docs/transformers/main/en/chat_templating"
)


class EmptyConversationError(ValueError, IndexError):
    """An empty conversation list (transformers fails with an ``IndexError`` on it: this is both)."""


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _jinja():
    try:
        import jinja2
    except ImportError as exc:
        raise ImportError("apply_chat_template needs jinja2>=3.1: pip install jinja2 (or triclip[chat])") from exc
    major, minor = (int(p) for p in jinja2.__version__.split(".")[:2])
    if (major, minor) < (3, 1):
        raise ImportError(f"apply_chat_template needs jinja2>=3.1, found {jinja2.__version__}")
    return jinja2


# --------------------------------------------------------------------------------------------------------------------
# Compiling a template
# --------------------------------------------------------------------------------------------------------------------


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """JSON without Jinja's HTML escaping (transformers' ``tojson`` filter)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:  # noqa: A002 (the template's argument name)
    """The local time now, formatted (a template global)."""
    return datetime.now().strftime(format)


def _raise_exception(message: str) -> None:
    """Let a template refuse its input: ``{{ raise_exception("...") }}``."""
    raise _jinja().exceptions.TemplateError(message)


def _generation_extension(jinja2: Any) -> type:
    """The ``{% generation %}`` tag: renders its body unchanged and, while a render is tracked, records where in
    the output the body's text lies."""

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_record", []), [], [], body).set_lineno(lineno)

        def _record(self, caller: Callable[[], str]) -> str:
            text = caller()
            tracking = _TRACKING.get()
            if tracking is not None:
                pieces, spans = tracking
                start = sum(len(p) for p in pieces)
                spans.append((start, start + len(text)))
            return text

    return Generation


@functools.lru_cache(maxsize=64)
def compile_template(source: str) -> Any:
    """Compile ``source`` in transformers' sandboxed environment (cached: a template is compiled once)."""
    if not isinstance(source, str):
        raise TypeError(f"a chat template must be a string, got {type(source).__name__}")
    jinja2 = _jinja()
    import jinja2.ext
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_generation_extension(jinja2), jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


# --------------------------------------------------------------------------------------------------------------------
# Rendering conversations
# --------------------------------------------------------------------------------------------------------------------


def _tool_schemas(tools: Sequence[Any] | None) -> list[dict] | None:
    if tools is None:
        return None
    import inspect

    from .tool_schema import function_schema

    schemas = []
    for tool in tools:
        if isinstance(tool, dict):
            schemas.append(tool)
        elif inspect.isfunction(tool):
            schemas.append(function_schema(tool))
        else:
            raise ValueError("Tools should either be a JSON schema, or a callable function with type hints and a "
                             "docstring suitable for auto-conversion to a schema.")
    return schemas


def _tag_final_message(chat: list[dict]) -> tuple[list[dict], str]:
    """A copy of ``chat`` whose final message's (last) text ends with the end tag, and that text as it was."""
    chat = copy.deepcopy(chat)
    content = chat[-1]["content"]
    if isinstance(content, (list, tuple)):
        for block in reversed(content):
            if "text" in block:
                original = block["text"]
                block["text"] = original + _END_TAG
                return chat, original
        raise ValueError("continue_final_message is set but we could not find any text to continue in the final "
                         "message!")
    chat[-1]["content"] = content + _END_TAG
    return chat, content


def _cut_after_final_message(rendered: str, final: str) -> str:
    """The rendered chat up to where the final message's text ends (transformers' rule: if the template kept the
    tag's trailing space, cut exactly there; otherwise it trimmed the message, so trim what precedes the cut)."""
    tag = _END_TAG.strip()
    if final.strip() not in rendered or tag not in rendered:
        raise ValueError(
            "continue_final_message is set but the final message does not appear in the chat after applying the chat "
            "template! This can happen if the chat template deletes portions of the final message. Please verify the "
            "chat template and final message in your chat to ensure they are compatible.")
    at = rendered.rindex(tag)
    if rendered[at:at + len(_END_TAG)] == _END_TAG:
        return rendered[:at]
    return rendered[:at].rstrip()


def render_conversations(conversations: Sequence[Any], template: str, tools: Sequence[Any] | None = None,
                         documents: Sequence[Any] | None = None, add_generation_prompt: bool = False,
                         continue_final_message: bool = False, track_generation: bool = False,
                         **variables: Any) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Render each conversation with ``template``.

    Returns the strings and, with ``track_generation``, per string the ``(start, end)`` character spans of its
    ``{% generation %}`` blocks (empty lists otherwise). ``variables`` are passed to the template.
    """
    if track_generation and not _GENERATION.search(template):
        _warn_once("return_assistant_tokens_mask==True but chat template does not contain `{% generation %}` keyword.")
    compiled = compile_template(template)
    schemas = _tool_schemas(tools)
    if documents is not None and any(not isinstance(d, dict) for d in documents):
        raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    context = dict(variables, tools=schemas, documents=documents, add_generation_prompt=add_generation_prompt)
    rendered, all_spans = [], []
    for chat in conversations:
        chat = getattr(chat, "messages", chat)  # a Conversation-like object
        final = None
        if continue_final_message:
            chat, final = _tag_final_message(chat)
        if track_generation:
            pieces: list[str] = []
            spans: list[tuple[int, int]] = []
            token = _TRACKING.set((pieces, spans))
            try:
                for piece in compiled.generate(context, messages=chat):
                    pieces.append(piece)
            finally:
                _TRACKING.reset(token)
            text = "".join(pieces)
        else:
            spans = []
            text = compiled.render(context, messages=chat)
        if final is not None:
            text = _cut_after_final_message(text, final)
        rendered.append(text)
        all_spans.append(spans)
    return rendered, all_spans


# --------------------------------------------------------------------------------------------------------------------
# The tokenizer methods
# --------------------------------------------------------------------------------------------------------------------


class ChatTemplates:
    """Mixin of the tokenizers' base class: ``get_chat_template``, ``apply_chat_template`` and
    ``encode_message_with_chat_template``, as transformers 4.57. Needs ``chat_template``, ``special_tokens_map``
    and ``__call__``."""

    def get_chat_template(self, chat_template: str | None = None, tools: Sequence[Any] | None = None) -> str:
        """The template to use: ``chat_template`` (a template, or the name of one of a dict :attr:`chat_template`),
        else the tokenizer's own (of a dict: ``"tool_use"`` when ``tools`` are given and it has one, else
        ``"default"``). ``ValueError`` when there is none."""
        own = self.chat_template
        if isinstance(own, dict):
            if chat_template is not None and chat_template in own:
                return own[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in own:
                    return own["tool_use"]
                if "default" in own:
                    return own["default"]
                raise ValueError(
                    "This model has multiple chat templates with no default specified! Please either pass a chat "
                    "template or the name of the template you wish to use to the `chat_template` argument. Available "
                    f"template names are {sorted(own.keys())}.")
        elif chat_template is None:
            if own is None:
                raise ValueError(NO_TEMPLATE)
            return own
        return chat_template

    def apply_chat_template(
        self,
        conversation: Any,
        tools: Sequence[Any] | None = None,
        documents: Sequence[dict] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: Any = False,
        truncation: Any = False,
        max_length: int | None = None,
        return_tensors: Any = None,
        return_dict: bool = False,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render a conversation (or a list of them) with the chat template and, by default, tokenize it.

        As transformers 4.57: returns the string(s) with ``tokenize=False``; else the ids (``padding``,
        ``truncation``, ``max_length``, ``return_tensors`` and ``tokenizer_kwargs`` go to the tokenizer call, which
        adds no special tokens: the template writes them), or the whole encoding with ``return_dict=True``, with
        ``assistant_masks`` under ``return_assistant_tokens_mask=True`` (fast class; 1 for the tokens of
        ``{% generation %}`` blocks). ``add_generation_prompt`` and ``kwargs`` are template variables;
        ``continue_final_message`` ends the text inside the final message. ``tools`` are JSON schemas or Python
        functions (with type hints and a Google-style docstring); ``documents`` dicts.
        """
        if return_dict and not tokenize:
            raise ValueError("`return_dict=True` is incompatible with `tokenize=False`, because there is no dict of "
                             "tokenizer outputs to return.")
        if return_assistant_tokens_mask and not return_dict:
            raise ValueError("`return_assistant_tokens_mask=True` is incompatible with `return_dict=False`")
        template = self.get_chat_template(chat_template, tools)
        if isinstance(conversation, (list, tuple)) and not conversation:
            raise EmptyConversationError("conversation is empty: give a list of messages (or a list of lists)")
        batched = isinstance(conversation, (list, tuple)) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
        conversations = conversation if batched else [conversation]
        if continue_final_message:
            if add_generation_prompt:
                raise ValueError(
                    "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                    "when you want the model to continue the final message, and add_generation_prompt when you want "
                    "to add a header that will prompt it to start a new assistant message instead.")
            if return_assistant_tokens_mask:
                raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        variables = {**self.special_tokens_map, **kwargs}  # the call's keywords win over the special tokens
        rendered, spans = render_conversations(
            conversations, template, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, track_generation=return_assistant_tokens_mask,
            **variables)
        texts = rendered if batched else rendered[0]
        if not tokenize:
            return texts
        out = self(texts, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        if not return_dict:
            return out["input_ids"]
        if return_assistant_tokens_mask:
            ids = out["input_ids"] if (batched or return_tensors) else [out["input_ids"]]
            masks = [_assistant_mask(out, i, len(ids[i]), spans[i]) for i in range(len(ids))]
            out["assistant_masks"] = masks if (batched or return_tensors) else masks[0]
            if return_tensors:
                out.convert_to_tensors(return_tensors)
        return out

    def encode_message_with_chat_template(self, message: dict, conversation_history: list[dict] | None = None,
                                          **kwargs: Any) -> list[int]:
        """The ids of one message given the conversation so far (for streaming), as transformers: the ids of the
        whole conversation from the first place where they differ from those of the history alone."""
        if "add_generation_prompt" in kwargs:
            raise ValueError("`encode_message_with_chat_template` does not support `add_generation_prompt`. Please "
                             "add the generation prompt separately.")
        if not conversation_history:
            return self.apply_chat_template([message], add_generation_prompt=False, tokenize=True, **kwargs)
        ids = self.apply_chat_template(list(conversation_history) + [message], add_generation_prompt=False,
                                       tokenize=True, **kwargs)
        before = self.apply_chat_template(conversation_history, add_generation_prompt=False, tokenize=True, **kwargs)
        common = min(len(before), len(ids))
        for i in range(common):
            if before[i] != ids[i]:
                return ids[i:]
        return ids[common:]


def _assistant_mask(out: Any, row: int, length: int, spans: list[tuple[int, int]]) -> list[int]:
    """1 for the tokens of row ``row`` that hold the characters of ``spans`` (transformers' rule: a span whose first
    character has no token, e.g. truncated away, ends the marking; one whose last character has none runs to the
    end of the row)."""
    mask = [0] * length
    for start, end in spans:
        first = out.char_to_token(row, start)
        last = out.char_to_token(row, end - 1)
        if first is None:
            break
        for t in range(first, last + 1 if last else length):
            mask[t] = 1
    return mask

"""apply_chat_template and friends on both triclip tokenizers, against transformers 4.57.6 live (same inputs, same
strings / ids / masks, or the same exception type), plus the tool-schema conversion against transformers'
get_json_schema (issue 15)."""

from __future__ import annotations

import logging
from typing import Any, Literal, Optional, Union

import numpy as np
import pytest

from clip_core.text.tool_schema import ToolSchemaError, function_schema
from clip_core.tokenizer import CLIPTokenizer, CLIPTokenizerFast

from tests.conftest import shared_path
from tests.test_tokenizer_api import pair  # noqa: F401 - the fixture: ours and transformers' tokenizer, each class

transformers = pytest.importorskip("transformers")
jinja2 = pytest.importorskip("jinja2")

CHAT = [
    {"role": "system", "content": "You are a helpful bot."},
    {"role": "user", "content": "Describe the photo of a cat!"},
    {"role": "assistant", "content": "A small grey cat sits on a red chair."},
]
CHAT_2 = [
    {"role": "user", "content": "hi 0"},
    {"role": "assistant", "content": "bye: 0"},
    {"role": "user", "content": "hi 1"},
    {"role": "assistant", "content": "bye: "},
]
IM = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
IM_TRIM = """
        {%- for message in messages %}
            {{- "<|im_start|>" + message['role'] + "\n" + message['content'] | trim + "<|im_end|>" + "\n"}}
        {%- endfor %}"""
GENERATION = (
    "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] "
    "+ '<|im_end|>\n' }}{% else %}{{ '<|im_start|>assistant\n' }}{% generation %}{{ m['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}{% endif %}{% endfor %}")
TEMPLATES = {
    "im": IM,
    "trim": IM_TRIM,
    "loop": "{%- for m in messages %}{{- m.role + ' ' + m.content }}{%- if loop.index == 2 %}{%- break %}{%- endif %}"
            "{%- endfor %}",
    "blocks": "{% for m in messages %}\n    {% if m.role == 'user' %}\n  U: {{ m.content }}\n    {% endif %}\n"
              "{% endfor %}",
    "specials": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}{{ pad_token }}"
                "{{ unk_token }}",
    "json": "{{ messages | tojson(indent=2) }}|{{ tools | tojson }}|{{ documents | tojson(sort_keys=true) }}"
            "|{{ '<a>&' | tojson }}|{{ extra }}",
    "ns": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% endfor %}"
          "{{ ns.n }}{{ messages[-1].content[::-1] }}",
}

FULL = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system = "" %}
{%- endif %}
{{- "<|header|>system<|end_header|>\n\n" }}
{%- if tools is not none %}
    {{- "Tools:\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{%- if documents %}{% for d in documents %}{{ loop.index }}. {{ d.title }}: {{ d.text }}
{% endfor %}{% endif %}
{{- system }}{{ "<|eot|>" }}
{%- for message in messages %}
    {%- if message.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' ~ message.role) }}{% endif %}
    {{- '<|header|>' + message['role'] + '<|end_header|>\n\n' + message['content'] | trim + '<|eot|>' }}
    {%- if loop.last and message.role == 'user' %}{{ ' (last)' }}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|header|>assistant<|end_header|>\n\n' }}
{%- endif %}
{{- "|" ~ (messages | length) ~ "|" ~ (messages | map(attribute='role') | join(',')) ~ "|" ~ "x".upper() }}
{{- date_string | default('no date') }}"""


@pytest.fixture(scope="module")
def fast_pair():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    folder = shared_path("data", "clip-bpe")
    return CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPTokenizerFast.from_pretrained(
        folder, model_max_length=77)


def both(pair, *args, **kwargs):
    """The call on both tokenizers: (ours, theirs), or the exception types when either raises."""
    results = []
    for tok in pair:
        try:
            results.append(tok.apply_chat_template(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 (the type is what is compared)
            results.append(exc)
    return results


def as_list(value: Any) -> Any:
    return np.asarray(value).tolist() if hasattr(value, "shape") else value


def same_failure(pair, expected: type, *args, same_message: bool = True, **kwargs) -> None:
    ours, theirs = both(pair, *args, **kwargs)
    assert isinstance(theirs, expected), theirs
    assert isinstance(ours, expected), ours
    if same_message:
        assert str(ours).split("\n")[0][:40] == str(theirs).split("\n")[0][:40]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_rendered_strings_match_transformers(pair, name):
    template = TEMPLATES[name]
    kwargs = dict(tools=[{"type": "function", "function": {"name": "f"}}], documents=[{"title": "t", "text": "x"}],
                  extra="E") if name == "json" else {}
    for conversation in (CHAT, CHAT_2, [CHAT, CHAT_2], [CHAT]):
        for prompt in (False, True):
            ours, theirs = both(pair, conversation, chat_template=template, tokenize=False,
                                add_generation_prompt=prompt, **kwargs)
            assert ours == theirs, (name, prompt)
            assert isinstance(ours, list) == (conversation[0] is CHAT or conversation[0] is CHAT_2)


def test_a_full_template_with_tools_documents_and_roles(pair):
    def weather(city: str) -> str:
        """Weather.

        Args:
            city: where
        """

    for conversation in (CHAT, CHAT_2, [CHAT, CHAT_2]):
        for kwargs in ({}, {"add_generation_prompt": True}, {"tools": [weather, {"name": "x"}]},
                       {"documents": [{"title": "T", "text": "body"}]}, {"date_string": "1 Jan"},
                       {"continue_final_message": True}):
            a, b = both(pair, conversation, chat_template=FULL, tokenize=False, **kwargs)
            assert a == b, kwargs
    same_failure(pair, jinja2.TemplateError, [{"role": "tool", "content": "x"}], chat_template=FULL)


def test_attribute_dict_templates_and_names(pair):
    ours, theirs = pair
    try:
        for tok in pair:
            tok.chat_template = IM
        assert both(pair, CHAT, tokenize=False)[0] == both(pair, CHAT, tokenize=False)[1]
        for tok in pair:
            tok.chat_template = {"default": IM, "tool_use": TEMPLATES["json"], "loop": TEMPLATES["loop"]}
        for kwargs in ({}, {"chat_template": "loop"}, {"tools": [{"name": "t"}]}, {"chat_template": "{{ 'x' }}"}):
            a, b = both(pair, CHAT, tokenize=False, **kwargs)
            assert a == b, kwargs
        for tok in pair:
            tok.chat_template = {"loop": TEMPLATES["loop"]}
        same_failure(pair, ValueError, CHAT, tokenize=False)  # several templates, no default
        for tok in pair:
            tok.chat_template = None
        same_failure(pair, ValueError, CHAT, tokenize=False)  # no template at all
    finally:
        ours.chat_template = theirs.chat_template = None


def test_continue_final_message_rules(pair):
    for template in (IM, IM_TRIM):
        for chat in (CHAT, CHAT_2, [dict(m) for m in CHAT[:2]] + [{"role": "assistant", "content": "It is  "}]):
            a, b = both(pair, chat, chat_template=template, tokenize=False, continue_final_message=True)
            assert a == b
    blocks = CHAT[:2] + [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "A cat"}]}]
    listing = "{% for m in messages %}{% for c in m.content if c.text %}{{ c.text }}{% endfor %}!{% endfor %}"
    a, b = both(pair, blocks, chat_template=listing, tokenize=False, continue_final_message=True)
    assert a == b == "!!A cat"
    no_text = CHAT[:2] + [{"role": "assistant", "content": [{"type": "image"}]}]
    same_failure(pair, ValueError, no_text, chat_template=listing, tokenize=False, continue_final_message=True)
    same_failure(pair, ValueError, CHAT, chat_template="{{ 'nothing' }}", tokenize=False, continue_final_message=True)
    same_failure(pair, ValueError, CHAT, chat_template=IM, continue_final_message=True, add_generation_prompt=True)
    assert CHAT[-1]["content"] == "A small grey cat sits on a red chair."  # the caller's messages are left alone


def test_bad_arguments_fail_as_in_transformers(pair):
    same_failure(pair, ValueError, CHAT, chat_template=IM, tokenize=False, return_dict=True)
    same_failure(pair, ValueError, CHAT, chat_template=IM, return_assistant_tokens_mask=True)
    same_failure(pair, ValueError, CHAT, chat_template=IM, return_dict=True, return_assistant_tokens_mask=True,
                 continue_final_message=True)
    same_failure(pair, TypeError, CHAT, chat_template=IM, tokenize=False, documents=["not a dict"])
    same_failure(pair, ValueError, CHAT, chat_template=IM, tokenize=False, tools=["not a tool"])
    same_failure(pair, IndexError, [], chat_template=IM, tokenize=False, same_message=False)  # ours says why
    same_failure(pair, jinja2.TemplateError, CHAT, chat_template="{{ raise_exception('no system role') }}")
    same_failure(pair, jinja2.exceptions.SecurityError, CHAT, chat_template="{{ messages.append(1) }}")
    same_failure(pair, jinja2.TemplateSyntaxError, CHAT, chat_template="{% for m in messages %}")


def test_strftime_now_is_today(pair):
    import datetime

    ours, theirs = both(pair, CHAT, chat_template="{{ strftime_now('%Y-%m-%d') }}", tokenize=False)
    today = datetime.date.today().isoformat()
    assert ours in (today, theirs) and len(ours) == 10


def test_tokenized_outputs_match_transformers(pair):
    ours, theirs = pair
    for conversation in (CHAT, [CHAT, CHAT_2]):
        a, b = both(pair, conversation, chat_template=IM)
        assert a == b
        a, b = both(pair, conversation, chat_template=IM, return_dict=True)
        assert dict(a) == dict(b)
        for kwargs in ({"padding": True}, {"truncation": True, "max_length": 9},
                       {"padding": "max_length", "max_length": 90, "return_tensors": "np"},
                       {"padding": True,
                        "tokenizer_kwargs": {"return_length": True, "return_special_tokens_mask": True}}):
            a, b = both(pair, conversation, chat_template=IM, return_dict=True, **kwargs)
            assert sorted(a) == sorted(b)
            for key in b:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
                assert type(a[key]) is type(b[key])
        same_failure(pair, TypeError, conversation, chat_template=IM, tokenizer_kwargs={"padding": True},
                     same_message=False)  # given twice
    # the template writes the special tokens: none are added
    assert ours.apply_chat_template(CHAT, chat_template="{{ bos_token }}")[0] == ours.bos_token_id
    assert both(pair, CHAT, chat_template="{{ bos_token }}x", bos_token="cat")[0] == both(
        pair, CHAT, chat_template="{{ bos_token }}x", bos_token="cat")[1]


def test_encode_message_with_chat_template(pair):
    for history in (None, CHAT[:1], CHAT[:2]):
        results = [tok.encode_message_with_chat_template(CHAT[-1], history, chat_template=IM) for tok in pair]
        assert results[0] == results[1]
    for tok in pair:
        with pytest.raises(ValueError):
            tok.encode_message_with_chat_template(CHAT[-1], CHAT[:2], chat_template=IM, add_generation_prompt=True)


@pytest.mark.parametrize("kwargs", [{}, {"padding": True}, {"padding": True, "return_tensors": "np"},
                                    {"truncation": True, "max_length": 30}, {"truncation": True, "max_length": 45},
                                    {"padding": True, "return_tensors": "pt"}])
def test_assistant_masks_match_transformers_fast(fast_pair, kwargs):
    if kwargs.get("return_tensors") == "pt":
        pytest.importorskip("torch")
    long = CHAT[:2] + [{"role": "assistant", "content": "a long answer, " * 6}, {"role": "user", "content": "ok"}]
    for conversation in (CHAT, [CHAT, CHAT_2], [long, CHAT], CHAT_2):
        a, b = both(fast_pair, conversation, chat_template=GENERATION, return_dict=True,
                    return_assistant_tokens_mask=True, **kwargs)
        assert sorted(a) == sorted(b)
        for key in b:
            assert as_list(a[key]) == as_list(b[key]), key
            assert type(a[key]) is type(b[key])
        if "truncation" not in kwargs:
            assert "1" in str(as_list(a["assistant_masks"])) and "0" in str(as_list(a["assistant_masks"]))


def test_assistant_masks_without_generation_block_and_from_the_slow_class(fast_pair, caplog):
    a, b = both(fast_pair, CHAT, chat_template=IM, return_dict=True, return_assistant_tokens_mask=True)
    assert a["assistant_masks"] == b["assistant_masks"] == [0] * len(b["input_ids"])
    folder = shared_path("data", "clip-bpe")
    slow = (CLIPTokenizer.from_pretrained(folder), transformers.CLIPTokenizer.from_pretrained(folder))
    same_failure(slow, ValueError, CHAT, chat_template=GENERATION, return_dict=True,
                 return_assistant_tokens_mask=True)  # char_to_token needs the fast class


def test_tools_as_functions_match_transformers(pair):
    def weather(city: str, unit: Literal["C", "F"] = "C") -> float:
        """The temperature in a city.

        Args:
            city: the city's name
            unit: the unit of the answer (choices: ["C", "F"])
        """

    template = "{% for t in tools %}{{ t | tojson }}\n{% endfor %}{{ messages[0].content }}"
    a, b = both(pair, CHAT, chat_template=template, tokenize=False, tools=[weather, {"type": "function"}])
    assert a == b and '"enum": ["C", "F"]' in a


def _full(city: str, unit: Literal["C", "F"] = "C", n: Optional[int] = None, xs: list[float] = (),
          d: dict[str, int] = None, t: tuple[int, str] = None, u: Union[int, str, None] = 1, a: Any = 0,
          m: Literal[1, "x"] = 1, b: bool = False, e: Union[list[int], dict] = None) -> float:
    """The temperature
    in a city.

    Args:
        city: the city's name,
            over two lines
        unit: the unit (choices: ["C", "F"])
        n: count
        xs: values
        d: mapping
        t: a pair
        u: int or text
        a: anything
        m: mixed literal
        b: a flag
        e: a list or a dict

    Returns:
        the temperature

    Raises:
        ValueError: never
    """


def _empty_first(x: int, y: str):
    """Short.

    Args:
        x: an x
        y:
    """


def _no_args_section(x: list) -> None:
    """Described Returns: early"""


def _no_hint(x, y: int):
    """Doc.

    Args:
        x: x
        y: y
    """


def _no_doc(x: int):
    pass


def _bad_tuple(x: tuple[int]):
    """Doc.

    Args:
        x: x
    """


@pytest.mark.parametrize("func", [_full, _empty_first])
def test_function_schema_matches_get_json_schema(func):
    from transformers.utils import get_json_schema

    assert function_schema(func) == get_json_schema(func)


@pytest.mark.parametrize("func", [_no_args_section, _no_hint, _no_doc, _bad_tuple])
def test_function_schema_refuses_what_get_json_schema_refuses(func):
    from transformers.utils import get_json_schema

    with pytest.raises(Exception):
        get_json_schema(func)
    with pytest.raises(ToolSchemaError, match=r"_no_args_section|_no_hint|_no_doc|tuple\[int\]"):
        function_schema(func)

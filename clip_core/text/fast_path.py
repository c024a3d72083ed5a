"""Which strings :class:`~clip_core.tokenizer.CLIPTokenizerFast` may hand whole to Rust, decided per string.

A string goes straight to the Rust pipeline (lowercase, CLIP split, byte-level BPE) only when a cheap check proves
that ftfy and HTML unescaping leave it unchanged (:meth:`Router.ftfy_noop`: no character any ftfy fixer touches, no
possible mojibake, NFC, short enough) *and* that every character in it is lowercased and classified identically by
Python (``str.lower``, the ``regex`` module) and Rust (``tokenizers``' lowercase and Oniguruma). That character set is
measured once per process (:func:`router`), so differing Unicode versions cannot make the two disagree. Any other
string is cleaned and split in Python exactly as OpenAI does.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from typing import Iterable

import regex

from .cleaning import load_ftfy

logger = logging.getLogger("clip_core.tokenizer")  # the public module's name: users' logging settings keep applying


def char_class(codepoints: Iterable[int], negate: bool = False) -> str:
    """A ``re`` character class matching exactly ``codepoints`` (or everything else with ``negate``)."""
    cps = sorted(set(codepoints))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = chr(cps[i]), chr(cps[j])
        parts.append(re.escape(lo) if i == j else f"{re.escape(lo)}-{re.escape(hi)}")
        i = j + 1
    if not parts:
        return r"[^\s\S]" if not negate else r"[\s\S]"
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def required_chars(pattern: re.Pattern) -> tuple[set[int], int] | None:
    """A set of characters of which every match of ``pattern`` contains at least one, and the longest match length.

    ``None`` when that cannot be told from the pattern (then callers must assume any text may match).
    """
    try:
        from re import _constants as C, _parser as P  # noqa: N812 - CPython's own regex parser
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_constants as C  # type: ignore[no-redef]  # noqa: N812
        import sre_parse as P  # type: ignore[no-redef]  # noqa: N812

    if pattern.flags & re.IGNORECASE:
        return None

    def weight(cp: int) -> int:  # prefer rare characters: symbols over capitals over lowercase over ASCII
        if cp < 128:
            return 10_000
        category = unicodedata.category(chr(cp))
        return {"Ll": 100, "Lu": 30, "Lo": 30}.get(category, 1)

    def class_set(items) -> set[int] | None:
        out: set[int] = set()
        for op, av in items:
            if op is C.LITERAL:
                out.add(av)
            elif op is C.RANGE:
                out.update(range(av[0], av[1] + 1))
            else:  # NEGATE, CATEGORY: unbounded
                return None
        return out

    def required(seq) -> set[int] | None:
        best = None
        for op, av in seq:
            found = None
            if op is C.LITERAL:
                found = {av}
            elif op is C.IN:
                found = class_set(av)
            elif op is C.SUBPATTERN:
                found = required(av[-1])
            elif op is C.BRANCH:
                found = set()
                for branch in av[1]:
                    sub = required(branch)
                    if sub is None:
                        found = None
                        break
                    found |= sub
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
                found = required(av[2])
            if found is not None and (best is None or sum(map(weight, found)) < sum(map(weight, best))):
                best = found
        return best

    tree = P.parse(pattern.pattern, pattern.flags)
    chars = required(tree)
    width = tree.getwidth()[1]
    if chars is None or width > 64:
        return None
    return chars, width


class Router:
    """Decides, per string, how much of OpenAI's pipeline can be skipped without changing a single id.

    ``fast_ok(text)``: ftfy and HTML unescaping are no-ops on ``text`` and Rust's lowercase + CLIP split give exactly
    Python's words, so the whole string can go to the Rust pipeline.
    ``ftfy_noop(text)``: ftfy and unescaping are no-ops (the Python path then skips them).

    Both are derived from ftfy's own tables (characters its fixers touch, its mojibake detector) and from a one-time
    comparison of Python and Rust on every Basic Multilingual Plane character and the emoji blocks. If ftfy's internals
    are not what this expects, every string takes the exact Python path (slower, never wrong).
    """

    def __init__(self) -> None:
        self.enabled = False
        self._ftfy_ready = False
        try:
            self._build()
            self.enabled = True
        except Exception as err:  # pragma: no cover - depends on ftfy / tokenizers internals
            logger.info("CLIPTokenizerFast: exact fast path disabled (%s); cleaning every string in Python", err)

    def _build(self) -> None:
        from ftfy import badness, chardata

        ftfy = load_ftfy()
        if not ftfy.__version__.startswith("6."):
            raise RuntimeError(f"ftfy {ftfy.__version__} not checked")
        bmp = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)
        # Characters some ftfy fixer changes whatever their context (plus '&' for HTML unescaping).
        touched = set(chardata.CONTROL_CHARS) | set(chardata.LIGATURES) | set(chardata.WIDTH_MAP)
        for fixer_re in (chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE, chardata.C1_CONTROL_RE):
            touched.update(map(ord, fixer_re.findall(bmp)))
        touched.update({0x1B, 0x85, 0x2028, 0x2029, ord("&")} | set(range(0xD800, 0xE000)))
        self._touched = touched
        self._touched_re = re.compile(char_class(touched))
        req = required_chars(badness.BADNESS_RE)
        if req is None:
            raise RuntimeError("cannot bound ftfy's mojibake detector")
        self._bad_re = badness.BADNESS_RE
        self._bad_req_re = re.compile(char_class(req[0]) + "+")
        self._bad_width = req[1]
        self._max_segment = ftfy.TextFixerConfig().max_decode_length
        self._ftfy_ready = True
        # Self-check on ftfy's own examples: the tables must describe what fix_text does.
        for sample in ("ﬁ", "’", "\x1c", "Ｆ", "Ã©"):
            if ftfy.fix_text(sample) == sample or self.ftfy_noop(sample):
                self._ftfy_ready = False
                raise RuntimeError(f"ftfy tables do not explain fix_text({sample!r})")

        safe = self._rust_agrees(bmp + "".join(map(chr, range(0x1F000, 0x1FB00))))
        allowed = (safe - touched) | {c for c in range(128) if c not in touched}
        self._fast_blocker = re.compile(char_class(allowed, negate=True) + r"|<\|")

    @staticmethod
    def _rust_agrees(candidates: str) -> set[int]:
        """The characters that Python and Rust lowercase identically and classify identically after lowercasing."""
        from tokenizers import Regex, normalizers, pre_tokenizers

        chars = [c for c in candidates if c != "\x00" and unicodedata.category(c) not in ("Cn", "Cs")]
        py_lower = [c.lower() for c in chars]
        rust_lower = normalizers.Lowercase().normalize_str("\x00".join(chars)).split("\x00")
        if len(rust_lower) != len(chars):
            raise RuntimeError("unexpected Rust lowercase output")
        probe = "".join(sorted(set("".join(chars) + "".join(py_lower) + "".join(rust_lower))))
        classes = {"L": r"[\p{L}]", "N": r"[\p{N}]", "S": r"\s"}
        py_sets = {k: set(regex.findall(p, probe, regex.IGNORECASE)) for k, p in classes.items()}
        py_sets["O"] = set(regex.findall(r"[^\s\p{L}\p{N}]", probe, regex.IGNORECASE))
        probe_set = set(probe)
        rust_sets = {  # drop the class members from the (code point ordered) probe; few, long pieces remain
            k: probe_set - set("".join(s for s, _ in pre_tokenizers.Split(Regex(p), "removed").pre_tokenize_str(probe)))
            for k, p in classes.items()
        }
        # Non-ASCII characters that case-insensitively match an ASCII letter (e.g. 'ſ' ~ 's') can change how the
        # contractions and special tokens match under OpenAI's IGNORECASE.
        ascii_alias = {c for c in regex.findall("[a-z]", probe, regex.IGNORECASE) if not c.isascii()}

        L, N, S, O = (py_sets[k] for k in "LNSO")
        RL, RN, RS = (rust_sets[k] for k in "LNS")
        r_other = probe_set - RL - RN - RS
        agree = (L & RL) - RN - RS | (N & RN) - RL - RS | (S & RS) - RL - RN | (O & r_other)
        ambiguous = (L & N) | (L & S) | (L & O) | (N & S) | (N & O) | (S & O)
        wrong_space = {x for x in probe_set if x.isspace()} ^ S  # str.strip() must agree with \s
        good = agree - ambiguous - ascii_alias - wrong_space
        return {
            ord(c)
            for c, low, rlow in zip(chars, py_lower, rust_lower)
            if low == rlow and c != "\u03a3" and c in good and all(x in good for x in low)
        }

    def _maybe_mojibake(self, text: str) -> bool:
        """True when ftfy's mojibake detector might fire on one of the segments ``fix_text`` processes.

        Every match of the detector holds one of its required characters and is at most ``width`` long, so only
        the text within ``width`` of such a character can match. Those windows (within one line, as ftfy splits
        segments at newlines) are merged and each merged span searched once: linear time, where a search per
        character took quadratic time on long runs of them.
        """
        width = self._bad_width
        search = self._bad_re.search
        seg_start = seg_end = 0  # the line holding the current character (ftfy's segment)
        span_start = span_end = 0  # the merged window not yet searched
        for m in self._bad_req_re.finditer(text):  # runs of required characters
            i, last = m.start(), m.end() - 1
            if i >= seg_end:
                seg_start = text.rfind("\n", 0, i) + 1
                seg_end = text.find("\n", i)
                seg_end = len(text) if seg_end < 0 else seg_end + 1
            if last >= seg_end:
                return True  # a run across lines (a newline among the required characters): assume the worst
            start, end = max(seg_start, i - width), min(seg_end, last + width + 1)
            if span_start >= seg_start and start <= span_end:
                span_end = end  # overlaps the open span on the same line: extend it
                continue
            if span_end > span_start and search(text[span_start:span_end]):
                return True
            span_start, span_end = start, end
        return span_end > span_start and search(text[span_start:span_end]) is not None

    def ftfy_noop(self, text: str) -> bool:
        """True only if ``html.unescape(html.unescape(ftfy.fix_text(text))) == text``."""
        if not self._ftfy_ready:
            return False
        return (
            self._touched_re.search(text) is None
            and len(text) <= self._max_segment
            and unicodedata.is_normalized("NFC", text)
            and not self._maybe_mojibake(text)
        )

    def fast_ok(self, text: str) -> bool:
        """True only if the Rust pipeline gives OpenAI's words for ``text``."""
        if not self.enabled or self._fast_blocker.search(text) is not None:
            return False
        return text.isascii() or self.ftfy_noop(text)


@lru_cache(maxsize=1)
def router() -> Router:
    """The process-wide :class:`Router` (built on first use: a one-time comparison of Python and Rust)."""
    return Router()

"""A small template engine for exactly the Jinja2 subset the shipped ad templates use (standard library only).

Why: the decision core must render with only the standard library (Pyodide, docs/edge.md), and Jinja2 needs
MarkupSafe, which ships a C extension. :mod:`dco.render` uses this module by default everywhere (Lambda too: it
saves Jinja2's import on cold start) and Jinja2 on request (``Renderer(engine="jinja2")``); both give
byte-identical output for every shipped template (tests/unit/test_minitemplate.py renders
every template in every format over an injection corpus with both and compares).

Data flow::

    source --_lex (Jinja's whitespace rules)--> data / {{ output }} / {% statement %} tokens
           --_Parser--> nodes (text, output, if, for, block) + blocks by name + the extends target
           --Template.render(context)--> str

The subset, with Jinja2's semantics (a template using anything else fails to compile with
:class:`TemplateSyntaxError`, never renders differently):

- ``{{ expr }}`` output, escaped like MarkupSafe when autoescape is on (``&<>'"``; values with ``__html__``,
  such as :class:`Markup`, pass through); ``expr`` is a name, a string or integer literal, ``true``/``false``/
  ``none``, attribute access ``a.b`` (attribute first, then item, as Jinja's ``getattr``), filters ``|name``
  (no arguments; registered in :attr:`Environment.filters`), ``not``, ``and``, ``or``, parentheses;
- ``{% if %}`` / ``{% elif %}`` / ``{% else %}`` / ``{% endif %}``; ``{% for x in expr %}`` / ``{% endfor %}``;
- ``{% extends "name" %}`` (a string literal, at top level) with ``{% block name %}`` / ``{% endblock %}``
  (the most derived definition wins; blocks see the template context, not loop variables);
- comments ``{# #}``; whitespace control ``{%-``, ``-%}``, ``{%+``, ``+%}`` (and the same for ``{{ }}``,
  ``{# #}``), ``trim_blocks``, ``lstrip_blocks``, and the removal of one trailing newline.

Undefined names and attributes raise :class:`UndefinedError` when evaluated (Jinja2's ``StrictUndefined``; the
only mode). Templates are trusted code, as with Jinja2 (not a sandbox), except that dunder attributes
(``x.__class__``) are refused at compile time.

The public names mirror Jinja2's so :mod:`dco.render` switches engines with one import::

    >>> env = Environment(loader=DictLoader({"t": "<b>{{ name }}</b>"}), autoescape=True)
    >>> env.get_template("t").render(name="<i>&")
    '<b>&lt;i&gt;&amp;</b>'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "DictLoader",
    "Environment",
    "Markup",
    "StrictUndefined",
    "Template",
    "TemplateError",
    "TemplateNotFound",
    "TemplateSyntaxError",
    "UndefinedError",
    "escape",
]


# ---------------------------------------------------------------------------------------------------- errors


class TemplateError(Exception):
    """Base of the template errors (a template is trusted code: these are bugs, not bad ad content).

    ::

        TemplateError
        ├── TemplateSyntaxError   the source uses something outside the subset, or is malformed
        ├── TemplateNotFound      no template by that name (also a LookupError)
        └── UndefinedError        a name or attribute the context does not have
    """


class TemplateSyntaxError(TemplateError):
    """The template cannot be compiled; ``name`` and ``lineno`` say where."""

    def __init__(self, message: str, lineno: int, name: str | None) -> None:
        self.message = message
        self.lineno = lineno
        self.name = name
        super().__init__(f"{message} (template {name!r}, line {lineno})")


class TemplateNotFound(LookupError, TemplateError):
    """No template by that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


class UndefinedError(TemplateError):
    """A name or attribute is not defined (``StrictUndefined`` semantics)."""


# ---------------------------------------------------------------------------------------------------- markup


class Markup(str):
    """Text that is already safe markup: output without escaping (MarkupSafe's protocol: ``__html__``)."""

    __slots__ = ()

    def __html__(self) -> Markup:
        return self


def escape(value: object) -> Markup:
    """MarkupSafe's ``escape``: ``&<>'"`` become ``&amp; &lt; &gt; &#39; &#34;``; ``__html__`` values pass.

    >>> escape("<a href='x'>&</a>"), escape(Markup("<b>")), escape(3)
    ('&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;', '<b>', '3')
    """
    html = getattr(value, "__html__", None)
    if html is not None:
        return Markup(html())
    return Markup(
        str(value).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;")
        .replace('"', "&#34;")
    )


class StrictUndefined:
    """Marker for ``Environment(undefined=...)``: undefined names raise (the only mode this engine has)."""


# ---------------------------------------------------------------------------------------------------- lexer

_BEGIN = re.compile(r"\{\{|\{%|\{#")
_WHITESPACE = re.compile(r"\s+")
_NEWLINE = re.compile(r"\r\n|\r|\n")
_VAR_END = re.compile(r"-\}\}\s*|\}\}")
_TOKEN = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<string>'[^'\\]*'|"[^"\\]*")
      |(?P<int>[0-9]+)
      |(?P<op>[.|()])""",
    re.X,
)

Token = tuple[str, str]  # (kind, value): name | string | int | op


def _tag_tokens(source: str, pos: int, end: re.Pattern[str], name: str | None, lineno: int) -> tuple[list[Token], int, str]:
    """The expression tokens of one tag from ``pos`` to its end marker: (tokens, position after, end text)."""
    tokens: list[Token] = []
    size = len(source)
    while True:
        ws = _WHITESPACE.match(source, pos)
        if ws is not None:
            pos = ws.end()
        if pos >= size:
            raise TemplateSyntaxError("unexpected end of template inside a tag", lineno, name)
        stop = end.match(source, pos)
        if stop is not None:
            return tokens, stop.end(), stop.group()
        match = _TOKEN.match(source, pos)
        if match is None:
            raise TemplateSyntaxError(f"unexpected {source[pos]!r} (outside the supported subset)", lineno, name)
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group()))
        pos = match.end()


def _lex(
    source: str, name: str | None, *, trim_blocks: bool, lstrip_blocks: bool, keep_trailing_newline: bool
) -> list[tuple[str, Any, int]]:
    """Tokens ``(kind, value, lineno)``: ``data`` (text), ``var`` and ``tag`` (expression tokens).

    Follows jinja2.lexer.Lexer.tokeniter: newlines normalised and one trailing newline dropped; ``-`` strips all
    whitespace on its side, ``+`` disables lstrip; lstrip_blocks removes the spaces and tabs between a line
    start and a statement or comment tag; trim_blocks removes one newline after a statement or comment tag.
    """
    lines = _NEWLINE.split(source)
    if not keep_trailing_newline and lines[-1] == "":
        del lines[-1]
    source = "\n".join(lines)
    suffix = "\\n?" if trim_blocks else ""
    block_end = re.compile(rf"\+%\}}|-%\}}\s*|%\}}{suffix}")
    comment_end = re.compile(rf"\+#\}}|-#\}}\s*|#\}}{suffix}")
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    lineno = 1
    line_starting = True
    size = len(source)
    while pos < size:
        begin = _BEGIN.search(source, pos)
        if begin is None:
            tokens.append(("data", source[pos:], lineno))
            break
        kind = begin.group()
        after = begin.end()
        sign = source[after] if after < size and source[after] in "-+" else ""
        text = source[pos : begin.start()]
        if sign == "-":
            text = text.rstrip()
        elif sign != "+" and lstrip_blocks and kind != "{{":
            l_pos = text.rfind("\n") + 1
            if (l_pos > 0 or line_starting) and _WHITESPACE.fullmatch(text, l_pos):
                text = text[:l_pos]
        if text:
            tokens.append(("data", text, lineno))
        lineno += source.count("\n", pos, after)
        pos = after + len(sign)
        if kind == "{#":
            stop = comment_end.search(source, pos)
            if stop is None:
                raise TemplateSyntaxError("missing end of comment tag", lineno, name)
            consumed = source[pos : stop.end()]
            end_text = stop.group()
            pos = stop.end()
        else:
            exprs, end_pos, end_text = _tag_tokens(source, pos, block_end if kind == "{%" else _VAR_END, name, lineno)
            consumed = source[pos:end_pos]
            tokens.append(("tag" if kind == "{%" else "var", exprs, lineno))
            pos = end_pos
        line_starting = end_text[-1:] == "\n"
        lineno += consumed.count("\n")
    return tokens


# ---------------------------------------------------------------------------------------------------- parser

Expr = Callable[[Mapping[str, Any]], Any]
Node = tuple[Any, ...]  # ("text", str) | ("out", Expr) | ("if", [(Expr, nodes)], nodes) | ("for", str, Expr, nodes)
#                         | ("block", name)
_CONSTANTS = {"true": True, "false": False, "none": None, "True": True, "False": False, "None": None}
_KEYWORDS = frozenset({"not", "and", "or", "in", "if", "else", "elif", "for", "is"})


def _undefined_name(name: str) -> Expr:
    def lookup(scope: Mapping[str, Any]) -> Any:
        try:
            return scope[name]
        except KeyError:
            raise UndefinedError(f"{name!r} is undefined") from None

    return lookup


def _attribute(target: Expr, attr: str) -> Expr:
    def lookup(scope: Mapping[str, Any]) -> Any:
        obj = target(scope)
        try:
            return getattr(obj, attr)
        except AttributeError:
            pass
        try:
            return obj[attr]
        except (TypeError, LookupError, AttributeError):
            raise UndefinedError(f"{type(obj).__name__!r} object has no attribute {attr!r}") from None

    return lookup


def _constant(value: Any) -> Expr:
    return lambda scope: value


def _filtered(target: Expr, function: Callable[[Any], Any]) -> Expr:
    return lambda scope: function(target(scope))


def _not(target: Expr) -> Expr:
    return lambda scope: not target(scope)


def _and(left: Expr, right: Expr) -> Expr:
    return lambda scope: left(scope) and right(scope)


def _or(left: Expr, right: Expr) -> Expr:
    return lambda scope: left(scope) or right(scope)


class _ExprParser:
    """Recursive descent over one tag's tokens: or > and > not > filter > attribute > atom."""

    def __init__(self, tokens: list[Token], filters: Mapping[str, Callable[[Any], Any]], name: str | None, lineno: int):
        self.tokens = tokens
        self.pos = 0
        self.filters = filters
        self.name = name
        self.lineno = lineno

    def fail(self, message: str) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, self.lineno, self.name)

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            found = "end of tag" if token is None else repr(token[1])
            raise self.fail(f"expected {value or kind}, found {found}")
        self.pos += 1
        return token[1]

    def at(self, kind: str, value: str) -> bool:
        return self.peek() == (kind, value)

    def done(self) -> None:
        if self.pos != len(self.tokens):
            raise self.fail(f"unexpected {self.tokens[self.pos][1]!r} (outside the supported subset)")

    def expression(self) -> Expr:
        left = self.conjunction()
        while self.at("name", "or"):
            self.pos += 1
            left = _or(left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.at("name", "and"):
            self.pos += 1
            left = _and(left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.at("name", "not"):
            self.pos += 1
            return _not(self.negation())
        return self.filtered()

    def filtered(self) -> Expr:
        expr = self.postfix()
        while self.at("op", "|"):
            self.pos += 1
            filter_name = self.take("name")
            function = self.filters.get(filter_name)
            if function is None:
                raise self.fail(f"no filter named {filter_name!r}")
            if self.at("op", "("):
                raise self.fail("filter arguments are outside the supported subset")
            expr = _filtered(expr, function)
        return expr

    def postfix(self) -> Expr:
        expr = self.atom()
        while self.at("op", "."):
            self.pos += 1
            attr = self.take("name")
            if attr.startswith("__"):
                raise self.fail(f"attribute {attr!r} is refused")
            expr = _attribute(expr, attr)
        return expr

    def atom(self) -> Expr:
        token = self.peek()
        if token is None:
            raise self.fail("expected an expression, found end of tag")
        kind, value = token
        self.pos += 1
        if kind == "name":
            if value in _CONSTANTS:
                return _constant(_CONSTANTS[value])
            if value in _KEYWORDS:
                raise self.fail(f"unexpected {value!r}")
            return _undefined_name(value)
        if kind == "string":
            return _constant(value[1:-1])
        if kind == "int":
            return _constant(int(value))
        if value == "(":
            inner = self.expression()
            self.take("op", ")")
            return inner
        raise self.fail(f"unexpected {value!r}")


class _Parser:
    """Tokens to nodes; collects block bodies by name and the extends target."""

    def __init__(self, tokens: list[tuple[str, Any, int]], filters: Mapping[str, Callable[[Any], Any]], name: str | None):
        self.tokens = tokens
        self.pos = 0
        self.filters = filters
        self.name = name
        self.blocks: dict[str, list[Node]] = {}
        self.parent: str | None = None
        self.before_extends: list[Node] | None = None

    def expr_parser(self, tokens: list[Token], lineno: int) -> _ExprParser:
        return _ExprParser(tokens, self.filters, self.name, lineno)

    def parse(self) -> list[Node]:
        nodes, end, _, lineno = self.nodes((), top=True)
        if end is not None:
            raise TemplateSyntaxError(f"unexpected {{% {end} %}}", lineno, self.name)
        return nodes

    def nodes(
        self, ends: tuple[str, ...], top: bool = False
    ) -> tuple[list[Node], str | None, _ExprParser | None, int]:
        """Nodes until one of the statement names in ``ends``: (nodes, that name, its tag's parser, line)."""
        out: list[Node] = []
        while self.pos < len(self.tokens):
            kind, value, lineno = self.tokens[self.pos]
            self.pos += 1
            if kind == "data":
                out.append(("text", value))
                continue
            parser = self.expr_parser(value, lineno)
            if kind == "var":
                expr = parser.expression()
                parser.done()
                out.append(("out", expr))
                continue
            word = parser.take("name")
            if word in ends:
                return out, word, parser, lineno
            if word == "if":
                out.append(self.if_statement(parser))
            elif word == "for":
                out.append(self.for_statement(parser))
            elif word == "block":
                out.append(self.block_statement(parser, lineno))
            elif word == "extends":
                if not top or self.parent is not None:
                    raise parser.fail("extends must appear once, at the top level")
                self.parent = parser.take("string")[1:-1]
                parser.done()
                self.before_extends = list(out)
            else:
                raise parser.fail(f"unknown or unexpected tag {word!r} (outside the supported subset)")
        if ends:
            raise TemplateSyntaxError(f"unexpected end of template, expected {' or '.join(ends)}", 0, self.name)
        return out, None, None, 0

    def if_statement(self, parser: _ExprParser) -> Node:
        branches: list[tuple[Expr, list[Node]]] = []
        condition = parser.expression()
        parser.done()
        while True:
            body, end, tag, _ = self.nodes(("elif", "else", "endif"))
            assert tag is not None
            branches.append((condition, body))
            if end == "elif":
                condition = tag.expression()
                tag.done()
                continue
            tag.done()
            if end == "else":
                otherwise, _, closing, _ = self.nodes(("endif",))
                assert closing is not None
                closing.done()
                return ("if", branches, otherwise)
            return ("if", branches, [])

    def for_statement(self, parser: _ExprParser) -> Node:
        target = parser.take("name")
        if target in _KEYWORDS or target in _CONSTANTS:
            raise parser.fail(f"cannot assign to {target!r}")
        parser.take("name", "in")
        iterable = parser.expression()
        parser.done()
        body, _, closing, _ = self.nodes(("endfor",))
        assert closing is not None
        closing.done()
        return ("for", target, iterable, body)

    def block_statement(self, parser: _ExprParser, lineno: int) -> Node:
        block = parser.take("name")
        parser.done()
        if block in self.blocks:
            raise parser.fail(f"block {block!r} defined twice")
        self.blocks[block] = []  # reserve the name (nested blocks register themselves)
        body, _, closing, _ = self.nodes(("endblock",))
        assert closing is not None
        if closing.peek() is not None:
            closing_name = closing.take("name")
            if closing_name != block:
                raise closing.fail(f"endblock {closing_name!r} closes block {block!r}")
        closing.done()
        self.blocks[block] = body
        return ("block", block)


# ---------------------------------------------------------------------------------------------------- runtime


class Template:
    """A compiled template; :meth:`render` takes the context as Jinja2's does (a mapping and/or keywords)."""

    def __init__(self, environment: Environment, name: str | None, source: str) -> None:
        self.environment = environment
        self.name = name
        self._autoescape = environment.autoescape(name) if callable(environment.autoescape) else bool(
            environment.autoescape
        )
        tokens = _lex(
            source,
            name,
            trim_blocks=environment.trim_blocks,
            lstrip_blocks=environment.lstrip_blocks,
            keep_trailing_newline=environment.keep_trailing_newline,
        )
        parser = _Parser(tokens, environment.filters, name)
        body = parser.parse()
        self.parent = parser.parent
        self.blocks = parser.blocks
        # With extends, only what comes before it is output by this template (as in Jinja2).
        self.nodes = body if parser.before_extends is None else parser.before_extends

    def render(self, *args: Any, **kwargs: Any) -> str:
        context = dict(*args, **kwargs)
        chain = [self]
        while chain[-1].parent is not None:
            parent = self.environment.get_template(chain[-1].parent)
            if parent in chain:
                raise TemplateError(f"template {parent.name!r} extends itself")
            chain.append(parent)
        blocks: dict[str, tuple[Template, list[Node]]] = {}
        for template in chain:
            for block, body in template.blocks.items():
                blocks.setdefault(block, (template, body))
        out: list[str] = []
        for template in chain:
            template._emit(template.nodes, context, context, blocks, out)
        return "".join(out)

    def _emit(
        self,
        nodes: list[Node],
        scope: Mapping[str, Any],
        context: Mapping[str, Any],
        blocks: Mapping[str, tuple[Template, list[Node]]],
        out: list[str],
    ) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                value = node[1](scope)
                out.append(escape(value) if self._autoescape else str(value))
            elif kind == "if":
                for condition, body in node[1]:
                    if condition(scope):
                        self._emit(body, scope, context, blocks, out)
                        break
                else:
                    self._emit(node[2], scope, context, blocks, out)
            elif kind == "for":
                _, target, iterable, body = node
                for item in iterable(scope):
                    self._emit(body, {**scope, target: item}, context, blocks, out)
            else:  # block: the most derived definition, rendered with the template context
                owner, body = blocks[node[1]]
                owner._emit(body, context, context, blocks, out)


class DictLoader:
    """Template sources by name (Jinja2's ``DictLoader``)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)

    def get_source(self, name: str) -> str:
        try:
            return self.mapping[name]
        except KeyError:
            raise TemplateNotFound(name) from None


class Environment:
    """Settings, filters and compiled templates (the Jinja2 ``Environment`` arguments :mod:`dco.render` uses).

    ``autoescape`` is a bool or a function of the template name; ``undefined`` must be :class:`StrictUndefined`
    (or left out: undefined names always raise); ``auto_reload`` is accepted and ignored (sources never change).
    Templates compile on first :meth:`get_template` and are cached, so register filters before that.
    """

    def __init__(
        self,
        *,
        loader: DictLoader | None = None,
        autoescape: bool | Callable[[str | None], bool] = False,
        undefined: type | None = None,
        trim_blocks: bool = False,
        lstrip_blocks: bool = False,
        keep_trailing_newline: bool = False,
        auto_reload: bool = False,
    ) -> None:
        if undefined is not None and undefined is not StrictUndefined:
            raise ValueError("dco.minitemplate only has StrictUndefined semantics")
        self.loader = loader or DictLoader({})
        self.autoescape = autoescape
        self.trim_blocks = trim_blocks
        self.lstrip_blocks = lstrip_blocks
        self.keep_trailing_newline = keep_trailing_newline
        self.filters: dict[str, Callable[[Any], Any]] = {}
        self._cache: dict[str, Template] = {}

    def get_template(self, name: str) -> Template:
        template = self._cache.get(name)
        if template is None:
            template = self._cache[name] = Template(self, name, self.loader.get_source(name))
        return template

    def from_string(self, source: str) -> Template:
        """Compile ``source`` (not cached); it may extend templates of the loader."""
        return Template(self, None, source)

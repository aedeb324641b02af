"""dco.minitemplate renders exactly what Jinja2 renders, for every shipped template and the whitespace rules.

The comparisons need Jinja2 (skipped without it); the engine's own behaviour (errors, escaping, the stdlib-only
import of the core) is tested either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from dco import minitemplate
from dco.campaign import MediaFile
from dco.errors import RequestError
from dco.minitemplate import (
    DictLoader,
    Environment,
    Markup,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    escape,
)
from dco.render import AdContent, Renderer
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    import jinja2
except ImportError:  # pragma: no cover - depends on the environment
    jinja2 = None

needs_jinja = pytest.mark.skipif(jinja2 is None, reason="jinja2 is not installed: nothing to compare with")

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATES = ("banner", "standard", "product_card", "video")
FORMATS = ("html", "js", "json", "vast")
TEXT_FIELDS = ("headline", "title", "description", "body", "cta", "offer", "brand", "price", "sale_price")
URL_FIELDS = ("image", "image_url", "logo", "logo_url")


def payloads() -> list[str]:
    lines = (FIXTURES / "xss_payloads.txt").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


PAYLOADS = payloads()


def base_content(template: str) -> AdContent:
    return AdContent(
        creative_id="cr-1",
        creative_type="video" if template == "video" else "dynamic",
        template=template,
        size="300x250",
        fields={
            "headline": "Trail runner", "title": "Trail runner 2", "description": "Light & fast",
            "cta": "Shop now", "offer": "Free shipping", "brand": "Acme", "price": "$99.00",
            "sale_price": "$79.00", "image": "https://img.example/shoe.png", "logo": "https://img.example/l.png",
        },
        click_url="https://t.example/v1/events/click?t=v1.a.b",
        impression_url="https://t.example/v1/events/imp?t=v1.a.b&cb=1",
        media=(MediaFile("https://cdn.example/v.mp4", "video/mp4", 1280, 720, 2000),
               MediaFile("https://cdn.example/v.webm", "video/webm", 640, 360, None, "streaming")),
        duration=3725,
        title="Acme ad",
        ad_id="dec-1",
        conversion_ref="https://t.example/v1/events/conv?t=v1.a.b",
    )


def variants(template: str) -> list[AdContent]:
    """Contents that walk every branch of the templates, then every payload in every field."""
    c = base_content(template)
    out = [
        c,
        replace(c, size=None),
        replace(c, size="728x90"),
        replace(c, size="160x600"),
        replace(c, fields={}),
        replace(c, fields={"headline": "only"}, click_url="", impression_url=""),
        replace(c, fields={**c.fields, "sale_price": c.fields["price"]}),
        replace(c, fields={**c.fields, "sale_price": ""}),
        replace(c, fields={**c.fields, "price": "", "sale_price": "$1"}),
        replace(c, fields={**c.fields, "image": "javascript:alert(1)"}),
        replace(c, media=(), duration=None, title="", ad_id=""),
        replace(c, click_url="javascript:alert(1)", impression_url="data:x"),
    ]
    for payload in PAYLOADS:
        out.append(replace(c, fields={**{name: payload for name in TEXT_FIELDS}, **dict.fromkeys(URL_FIELDS, payload)}))
        out.append(replace(c, title=payload, ad_id=payload, creative_id=payload, click_url=payload,
                           impression_url="https://t.example/i?x=" + payload,
                           media=(MediaFile("https://cdn.example/v.mp4?" + payload, payload, 1, 2, 3, payload),)))
    return out


def outcome(renderer: Renderer, content: AdContent, fmt: str) -> tuple[str, str]:
    try:
        rendered = renderer.render(content, fmt)
    except RequestError as exc:
        return ("error", str(exc))
    return (rendered.content_type, rendered.body)


@needs_jinja
@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_shipped_templates_render_identically(template: str, fmt: str) -> None:
    jinja_renderer, mini_renderer = Renderer(engine="jinja2"), Renderer(engine="mini")
    for content in variants(template):
        assert outcome(mini_renderer, content, fmt) == outcome(jinja_renderer, content, fmt), content


def test_renderer_engines() -> None:
    assert Renderer(engine="mini").engine == "mini"
    with pytest.raises(ValueError, match="template engine"):
        Renderer(engine="mako")


# ---------------------------------------------------------------------------------------------------- whitespace

SNIPPETS = [
    "a\n{% if x %}\nyes\n{% endif %}\nb\n",
    "  {% if x %}  yes  {% endif %}  \n  after",
    "\t{% if x %}\n\t\tyes\n\t{% else %}\n\t\tno\n\t{% endif %}\n",
    "{%- if x -%}  yes  {%- endif -%}\n\n end",
    "a  {%+ if x %}b{% endif +%}\nc",
    "x {{- y -}} z\n",
    "{# c #}\n  {#- c -#}  \n {# c\n two lines #}\nafter\n\n",
    "{% for i in items %}\n  <li>{{ i }}</li>\n{% endfor %}\n",
    "{% for i in items %}{{ i }}{% if i %},{% endif %}{% endfor %}",
    "line\n    {% if x %}text{% endif %} tail\n",
    "{{ a }}   {% if x %}\n{% endif %}",
    "{% if x %}a{% elif y %}b{% elif z %}c{% else %}d{% endif %}",
    "{% if not x and y or z %}t{% else %}f{% endif %}",
    "{% if (x or y) and not z %}t{% endif %}",
    "{{ d.k }} {{ d.attr }} {{ n }} {{ 'lit' }} {{ 42 }} {{ none }} {{ true }}",
    "{{ s|up }}{{ s|up|safe_wrap }}",
    "\r\nwin\r\n{% if x %}\r\ny\r\n{% endif %}\r\n",
    "trailing\n\n",
    "",
]


def _pair(sources: dict[str, str], **options: object) -> tuple[object, Environment]:
    assert jinja2 is not None
    settings_ = {"autoescape": True, "trim_blocks": True, "lstrip_blocks": True, **options}
    j = jinja2.Environment(loader=jinja2.DictLoader(sources), undefined=jinja2.StrictUndefined, **settings_)
    m = Environment(loader=DictLoader(sources), undefined=StrictUndefined, **settings_)  # type: ignore[arg-type]
    for env, markup in ((j, jinja2.utils.markupsafe.Markup), (m, Markup)):
        env.filters["up"] = str.upper  # type: ignore[attr-defined]
        env.filters["safe_wrap"] = lambda v, markup=markup: markup(f"<b>{v}</b>")  # type: ignore[attr-defined]
    return j, m


CONTEXT = {"a": "<A>", "x": True, "y": False, "z": "z", "items": ["<a>", "", "b&'\""], "s": "<s>", "n": 3,
           "d": {"k": "v<", "attr": "x"}}


def _both(sources: dict[str, str], name: str, context: dict[str, object], **options: object) -> tuple[str, str]:
    j, m = _pair(sources, **options)
    return m.get_template(name).render(context), j.get_template(name).render(context)  # type: ignore[attr-defined]


@needs_jinja
@pytest.mark.parametrize("source", SNIPPETS)
@pytest.mark.parametrize(
    "options",
    [{}, {"trim_blocks": False}, {"lstrip_blocks": False}, {"trim_blocks": False, "lstrip_blocks": False},
     {"keep_trailing_newline": True}, {"autoescape": False}],
)
def test_whitespace_and_expressions_match_jinja(source: str, options: dict[str, object]) -> None:
    for context in (CONTEXT, {**CONTEXT, "x": False, "y": True}, {**CONTEXT, "x": 0, "y": "", "z": None}):
        mini, jinja = _both({"t": source}, "t", context, **options)
        assert mini == jinja


@needs_jinja
def test_inheritance_matches_jinja() -> None:
    sources = {
        "base": "<h>{% block head %}H{% endblock %}</h>\n{% block body %}\n  B{% block inner %}I{% endblock %}\n"
                "{% endblock body %}\n{% for i in items %}{% block row %}[{{ z }}]{% endblock %}{% endfor %}\n",
        "mid": "{% extends 'base' %}\n{% block inner %}M{{ s }}{% endblock %}\n",
        "leaf": "before {{ n }}\n{% extends \"mid\" %}\nignored {{ s }}\n{% block head %}L{% endblock %}\n",
        "override": "{% extends 'base' %}{% block body %}O{% endblock %}",
    }
    for name in sources:
        mini, jinja = _both(sources, name, CONTEXT)
        assert mini == jinja, name


FRAGMENTS = st.sampled_from([
    "a", "<b>", " ", "  ", "\t", "\n", "\n  ", "{{ s }}", "{{- s }}", "{{ s -}}", "{{ n }}",
    "{% if x %}", "{%- if y %}", "{% if z -%}", "{%+ if x %}", "{% else %}", "{%- else -%}", "{% endif %}",
    "{% endif -%}", "{% endif +%}", "{# c #}", "{#- c #}", "{# c -#}", "{# c\n #}",
])


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Random well-formed templates: text and output tags with if/else/endif nested properly."""
    parts: list[str] = []
    depth = 0
    has_else: list[bool] = []
    for fragment in draw(st.lists(FRAGMENTS, max_size=30)):
        if "endif" in fragment:
            if depth == 0:
                continue
            depth -= 1
            has_else.pop()
        elif "else" in fragment:
            if depth == 0 or has_else[-1]:
                continue
            has_else[-1] = True
        elif "if " in fragment:
            depth += 1
            has_else.append(False)
        parts.append(fragment)
    parts.extend(["{% endif %}"] * depth)
    return "".join(parts)


@needs_jinja
@settings(max_examples=300, deadline=None)
@given(source=templates(), trim=st.booleans(), lstrip=st.booleans(), x=st.booleans(), y=st.booleans())
def test_random_templates_match_jinja(source: str, trim: bool, lstrip: bool, x: bool, y: bool) -> None:
    mini, jinja = _both({"t": source}, "t", {**CONTEXT, "x": x, "y": y}, trim_blocks=trim, lstrip_blocks=lstrip)
    assert mini == jinja


# ---------------------------------------------------------------------------------------------------- own behaviour


def test_escape_matches_markupsafe_rules() -> None:
    assert escape("<a href=\"x\" title='y'>&</a>") == "&lt;a href=&#34;x&#34; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
    assert escape(Markup("<b>")) == "<b>"
    assert escape(None) == "None"


@pytest.mark.parametrize(
    "source",
    ["{% set x = 1 %}", "{{ x + 1 }}", "{{ x[0] }}", "{{ x|upper }}", "{{ x|up(1) }}", "{% macro m() %}{% endmacro %}",
     "{% for x in y %}{% else %}{% endfor %}", "{{ x.__class__ }}", "{% if x %}", "{% endif %}", "{{ x", "{# x",
     "{% raw %}{% endraw %}", "{% block a %}{% endblock %}{% block a %}{% endblock %}",
     "{% block a %}{% endblock b %}", "{% if x %}{% extends 'y' %}{% endif %}", "{{ 'a\\'b' }}"],
)
def test_outside_the_subset_fails_to_compile(source: str) -> None:
    env = Environment(loader=DictLoader({"t": source}), autoescape=True)
    env.filters["up"] = str.upper
    with pytest.raises(TemplateSyntaxError):
        env.get_template("t")


def test_undefined_names_and_attributes_raise() -> None:
    env = Environment(loader=DictLoader({"a": "{{ nope }}", "b": "{{ d.nope }}", "c": "{% if nope %}{% endif %}"}))
    for name in ("a", "b", "c"):
        with pytest.raises(UndefinedError):
            env.get_template(name).render(d={})
    with pytest.raises(TemplateNotFound):
        env.get_template("missing")
    with pytest.raises(ValueError):
        Environment(undefined=object)


def test_attribute_then_item_lookup() -> None:
    env = Environment(loader=DictLoader({"t": "{{ m.url }} {{ d.url }}"}))
    assert env.get_template("t").render(m=MediaFile("https://a", "video/mp4", 1, 1), d={"url": "b"}) == "https://a b"


def test_core_imports_and_renders_with_stdlib_and_msgpack_only() -> None:
    """Every core module imports with numpy, pyroaring, jinja2, markupsafe, yaml and ua_parser blocked."""
    script = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {"numpy", "pyroaring", "jinja2", "markupsafe", "yaml", "ua_parser", "boto3", "botocore"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(fullname + " blocked")
sys.meta_path.insert(0, Blocker())
import dco
for info in pkgutil.iter_modules(dco.__path__):
    if not info.ispkg:
        importlib.import_module("dco." + info.name)
from dco import render
assert render.DEFAULT_ENGINE == "mini", render.DEFAULT_ENGINE
from dco.config import parse_config_text
try:
    parse_config_text("a: 1", fmt="yaml")
except Exception as exc:
    assert "PyYAML" in str(exc), exc
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_module_exports() -> None:
    assert set(minitemplate.__all__) <= set(dir(minitemplate))

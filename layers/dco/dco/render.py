"""Ad rendering: one decided ad (an :class:`AdContent`) in, markup for one format out.

Data flow::

    decide ──AdContent (fields, tracking URLs, media)──> Renderer.render(content, fmt) ──> Rendered(body, type)

Formats (``fmt``): ``html`` (a complete, iframe-ready document sized to the ad), ``js`` (a script that inserts
that document as a sandboxed ``srcdoc`` iframe next to the ``<script>`` tag), ``json`` (native: assets, click URL,
impression trackers) and ``vast`` (VAST 4.2 InLine linear video).

Safety, by context (docs/rendering.md has the full rules):

- text: every field is first stripped of the characters XML 1.0 forbids (C0 controls but tab/LF/CR, lone
  surrogates, U+FFFE/U+FFFF), then escaped by Jinja2 autoescape (HTML), ``|xmltext`` (VAST) or
  :func:`js_literal` (JSON and the JS tag: ``json.dumps`` plus ``\\u003c``/``\\u003e``/``\\u0026``/U+2028/U+2029
  escapes, so the text is inert inside a ``<script>`` block);
- URLs (``click_url``, ``impression_url``, media URLs, and every field named ``image``, ``logo``, ``landing``,
  ``link``, ``url``, ``video``, ``poster`` or ending in ``_url``) must pass :func:`dco.tracking.safe_url`
  (absolute http(s), no whitespace or control tricks); a URL that fails is dropped: no ``src``, no link
  (the ad renders unlinked), no tracker;
- styles: the only values inside ``<style>`` are integers computed from a validated ``WxH`` size;
- the HTML document carries a Content-Security-Policy that allows no script at all, and the JS tag's iframe is
  sandboxed without ``allow-scripts``: defence in depth should escaping ever be bypassed.

Templates are Jinja2 sources shipped in ``dco/templates`` and read once with :mod:`importlib.resources` into a
``DictLoader`` (works from a zip import and in Pyodide, unlike ``PackageLoader``). Build one :class:`Renderer` per
warm process; it compiles each template once. Templates are trusted code (not sandboxed); ad content is not.

Engines: :mod:`dco.minitemplate` by default (standard library only: Lambda, Pyodide, the ``dco-runtime`` wheel
without extras), which implements exactly the Jinja2 subset the shipped templates use and renders them
byte-identically (tests/unit/test_minitemplate.py renders every shipped template in every format over an
injection corpus with both engines and compares). ``Renderer(engine="jinja2")`` uses Jinja2 instead, imported
only then: decide never pays its import (about 25 ms of cold start, docs/performance.md, "coldstart").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from typing import Any

from dco import __version__, minitemplate
from dco.campaign import AD_FORMATS, MediaFile
from dco.errors import ConfigError, RequestError
from dco.minitemplate import Markup
from dco.tracking import safe_url

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_ENGINE",
    "TEMPLATE_ENGINES",
    "AdContent",
    "Rendered",
    "Renderer",
    "clean_text",
    "default_renderer",
    "fill_placeholders",
    "format_price",
    "is_url_field",
    "js_literal",
    "parse_size",
    "render",
    "safe_url",
]

CONTENT_TYPES: dict[str, str] = {
    "html": "text/html; charset=utf-8",
    "js": "application/javascript; charset=utf-8",
    "json": "application/json",
    "vast": "application/xml",
}
TEMPLATE_ENGINES: tuple[str, ...] = ("jinja2", "mini")
DEFAULT_ENGINE = "mini"
VAST_VERSION = "4.2"
DEFAULT_CTA = "Learn more"

_URL_FIELD_NAMES = frozenset({"image", "logo", "landing", "link", "url", "video", "poster"})
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JS_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_XML_ESCAPES = {
    ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&apos;",
    ord("\t"): "&#9;", ord("\n"): "&#10;", ord("\r"): "&#13;",
}
_SIZE = re.compile(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CURRENCIES: dict[str, tuple[str, int]] = {
    "USD": ("$", 2), "EUR": ("€", 2), "GBP": ("£", 2), "JPY": ("¥", 0), "CAD": ("CA$", 2),
}


@dataclass(frozen=True)
class AdContent:
    """Everything needed to render one decided ad; built by the engine, values are untrusted text.

    ``creative_type`` is standard|dynamic|assembled|video; ``template`` names an HTML template (banner,
    product_card, standard, video); ``size`` is ``WxH`` or ``None`` (fluid); ``fields`` holds the creative's
    assets, the chosen variants' content and the product's values (headline, image, cta, title, description,
    price, sale_price, offer, brand...), already through :func:`fill_placeholders` and :func:`format_price`.
    """

    creative_id: str
    creative_type: str
    template: str
    size: str | None
    fields: Mapping[str, str]
    click_url: str
    impression_url: str
    media: tuple[MediaFile, ...] = ()
    duration: int | None = None
    title: str = ""
    ad_id: str = ""
    conversion_ref: str = ""


@dataclass(frozen=True)
class Rendered:
    """A rendered ad: the response body and its Content-Type."""

    body: str
    content_type: str


# ---------------------------------------------------------------------------------------------------- helpers


def clean_text(value: object) -> str:
    """``value`` as text without the characters XML 1.0 forbids (so every format can carry it unchanged).

    >>> clean_text("a\\x00b\\x1fc\\td")
    'abc\\td'
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return _XML_INVALID.sub("", text)


def is_url_field(name: str) -> bool:
    """Whether a content field holds a URL (and so must pass :func:`safe_url`)."""
    return name in _URL_FIELD_NAMES or name.endswith("_url")


def js_literal(value: object) -> str:
    """A JSON literal that is also safe inside an HTML ``<script>`` block and in JavaScript source.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e``, ``\\u0026`` (no ``</script>``, no ``<!--``), U+2028 and
    U+2029 are escaped (line terminators in old JavaScript), and lone surrogates are escaped (valid UTF-8).

    >>> js_literal("</script><!--\\u2028")
    '"\\\\u003c/script\\\\u003e\\\\u003c!--\\\\u2028"'
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    for char, escape in _JS_ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _xml_escaped(value: object) -> str:
    """``value`` escaped for XML text or a quoted attribute (the ``xmltext`` filter); tab, LF and CR as character
    references, so a parser gives back exactly :func:`clean_text` of the value."""
    return clean_text(value).translate(_XML_ESCAPES)


def parse_size(size: str | None) -> tuple[int, int] | None:
    """``"300x250"`` -> ``(300, 250)``; ``None`` -> ``None`` (fluid). RequestError on anything else."""
    if size is None:
        return None
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None:
        raise RequestError("size", f"size must be WxH with 1..9999 pixels, got {size!r}")
    return int(match.group(1)), int(match.group(2))


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` by ``values[name]``; unknown placeholders stay as they are.

    A single pass over ``text``: substituted values are not scanned again, and there is no attribute or index
    access (unlike ``str.format``), so product data cannot reach anything but its own value.

    >>> fill_placeholders("From {price} at {brand} {x.__class__} {nope}", {"price": "$9", "brand": "{price}"})
    'From $9 at {price} {x.__class__} {nope}'
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(substitute, text)


def format_price(value: float, currency: str) -> str:
    """A display price: ``$1,299.00``, ``€12.99``, ``£5.00``, ``¥1,300``, ``CA$3.50``, else ``12.99 CHF``.

    Rounds half up at the currency's decimals. ValueError for a non-finite value or a code that is not three
    letters.

    >>> format_price(12.995, "usd"), format_price(1299.5, "JPY"), format_price(12.5, "CHF")
    ('$13.00', '¥1,300', '12.50 CHF')
    """
    if not math.isfinite(value):
        raise ValueError(f"price must be finite, got {value!r}")
    code = currency.upper()
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise ValueError(f"currency must be an ISO 4217 code, got {currency!r}")
    symbol, digits = _CURRENCIES.get(code, ("", 2))
    amount = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):,.{digits}f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code}"


def _format_duration(seconds: int | None) -> str:
    total = max(0, int(seconds or 0))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _split_fields(fields: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(text fields, cleaned) and (URL fields that pass safe_url); unsafe URLs are dropped."""
    texts: dict[str, str] = {}
    urls: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            continue
        if is_url_field(name):
            url = safe_url(value)
            if url is not None:
                urls[name] = url
        else:
            texts[name] = clean_text(value)
    return texts, urls


def _layout(dims: tuple[int, int] | None) -> tuple[str, int]:
    """The layout class (wide, tall, box) and base font size in pixels for a size."""
    if dims is None:
        return "box", 16
    width, height = dims
    if width >= 3 * height:
        return "wide", max(11, min(24, round(height * 0.2)))
    if height >= 1.5 * width:
        return "tall", max(12, min(22, round(width * 0.09)))
    return "box", max(12, min(24, round(min(width, height) * 0.07)))


def _package_templates() -> dict[str, str]:
    """The template sources shipped in ``dco/templates``, by file name."""
    folder = resources.files("dco").joinpath("templates")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
    }


# ---------------------------------------------------------------------------------------------------- renderer


class Renderer:
    """Renders ads; build once per warm process and reuse.

    ``templates`` (file name -> Jinja2 source) adds templates or replaces shipped ones by name; an HTML
    template ``<name>.html`` is selected by ``AdContent.template == name``. ``_base.html`` is the shared
    document frame, ``tag.js`` the JS loader (every value through ``|tojs``), ``vast.xml`` the VAST document
    (every value through ``|xmltext``). ``engine`` is ``"mini"`` (:mod:`dco.minitemplate`), ``"jinja2"`` (when
    installed) or None for :data:`DEFAULT_ENGINE` (``"mini"``).
    """

    def __init__(self, templates: Mapping[str, str] | None = None, *, engine: str | None = None) -> None:
        sources = _package_templates()
        sources.update(templates or {})
        engine = engine or DEFAULT_ENGINE
        lib, markup = _engine(engine)
        self.engine = engine
        self._env = lib.Environment(
            loader=lib.DictLoader(sources),
            autoescape=True,
            undefined=lib.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        # each engine's own Markup class (MarkupSafe's for Jinja2), as its autoescape expects
        self._env.filters["tojs"] = lambda value: markup(js_literal(value))
        self._env.filters["xmltext"] = lambda value: markup(_xml_escaped(value))
        self._compiled: dict[str, Any] = {}
        self._html_names = frozenset(
            name[: -len(".html")] for name in sources if name.endswith(".html") and not name.startswith("_")
        )

    @property
    def html_templates(self) -> frozenset[str]:
        """The names ``AdContent.template`` may take (for config validation)."""
        return self._html_names

    def _template(self, name: str) -> Any:
        template = self._compiled.get(name)
        if template is None:
            template = self._compiled[name] = self._env.get_template(name)
        return template

    def render(self, content: AdContent, fmt: str) -> Rendered:
        """Render ``content`` as ``fmt`` (html, js, json or vast).

        RequestError for an unknown format, a malformed size, or ``vast`` without video media;
        ConfigError for an unknown template.
        """
        if fmt == "html":
            body = self._html(content)
        elif fmt == "js":
            body = self._js(content)
        elif fmt == "json":
            body = self._native(content)
        elif fmt == "vast":
            body = self._vast(content)
        else:
            raise RequestError("format", f"format must be one of {', '.join(AD_FORMATS)}, got {fmt!r}")
        return Rendered(body=body, content_type=CONTENT_TYPES[fmt])

    # -- html / js

    def _html_context(self, content: AdContent) -> dict[str, object]:
        if content.template not in self._html_names:
            raise ConfigError("template", f"unknown template {content.template!r}")
        dims = parse_size(content.size)
        layout, font = _layout(dims)
        texts, urls = _split_fields(content.fields)
        headline = texts.get("headline") or texts.get("title") or ""
        price = texts.get("price") or ""
        sale_price = texts.get("sale_price") or ""
        if sale_price == price:
            sale_price = ""
        media = [m for m in content.media if safe_url(m.url) is not None]
        return {
            "kind": content.template,
            "layout": layout,
            "font": font,
            "width_css": f"{dims[0]}px" if dims else "100%",
            "height_css": f"{dims[1]}px" if dims else "100vh",
            "title": clean_text(content.title) or headline,
            "ad_id": clean_text(content.ad_id),
            "headline": headline,
            "description": texts.get("description") or texts.get("body") or "",
            "cta": texts.get("cta") or DEFAULT_CTA,
            "offer": texts.get("offer") or "",
            "brand": texts.get("brand") or "",
            "price": price,
            "sale_price": sale_price,
            "image": urls.get("image") or urls.get("image_url") or "",
            "logo": urls.get("logo") or urls.get("logo_url") or "",
            "fields": texts,
            "urls": urls,
            "media": media,
            "click_url": safe_url(content.click_url) or "",
            "impression_url": safe_url(content.impression_url) or "",
        }

    def _html(self, content: AdContent) -> str:
        context = self._html_context(content)
        return self._template(f"{content.template}.html").render(context)

    def _js(self, content: AdContent) -> str:
        dims = parse_size(content.size)
        return self._template("tag.js").render(
            html=self._html(content),
            width=str(dims[0]) if dims else "100%",
            height=str(dims[1]) if dims else "100%",
            title=clean_text(content.title) or "Advertisement",
            ad_id=clean_text(content.ad_id),
        )

    # -- json (native)

    def _native(self, content: AdContent) -> str:
        dims = parse_size(content.size)
        texts, urls = _split_fields(content.fields)
        impression = safe_url(content.impression_url)
        document = {
            "ad_id": clean_text(content.ad_id),
            "creative_id": clean_text(content.creative_id),
            "type": clean_text(content.creative_type),
            "template": clean_text(content.template),
            "size": {"width": dims[0], "height": dims[1]} if dims else None,
            "title": clean_text(content.title),
            "assets": {**texts, **urls},
            "click_url": safe_url(content.click_url),
            "impression_trackers": [impression] if impression else [],
            "conversion_ref": safe_url(content.conversion_ref),
            "media": [_media_dict(m) for m in content.media if safe_url(m.url) is not None],
            "duration": content.duration,
        }
        return js_literal(document)

    # -- vast

    def _vast(self, content: AdContent) -> str:
        media = [m for m in content.media if safe_url(m.url) is not None]
        if not media:
            raise RequestError("format", "vast needs a video creative with at least one http(s) media file")
        texts, _ = _split_fields(content.fields)
        return self._template("vast.xml").render(
            version=VAST_VERSION,
            generator_version=__version__,
            ad_id=content.ad_id or content.creative_id,
            creative_id=content.creative_id,
            title=content.title or texts.get("headline") or content.creative_id,
            description=texts.get("description") or "",
            duration=_format_duration(content.duration),
            media=[_media_dict(m) for m in media],
            impression_url=safe_url(content.impression_url) or "",
            click_url=safe_url(content.click_url) or "",
        )


def _media_dict(media: MediaFile) -> dict[str, object]:
    return {
        "url": media.url,
        "type": clean_text(media.type),
        "width": int(media.width),
        "height": int(media.height),
        "bitrate": int(media.bitrate) if media.bitrate is not None else None,
        "delivery": clean_text(media.delivery),
    }


def _engine(name: str) -> tuple[Any, type[str]]:
    """``(module with Environment/DictLoader/StrictUndefined, its Markup class)`` of a template engine."""
    if name == "mini":
        return minitemplate, Markup
    if name == "jinja2":
        try:
            import jinja2
            from markupsafe import Markup as SafeMarkup
        except ImportError:  # pragma: no cover - jinja2 is an extra
            pass
        else:
            return jinja2, SafeMarkup
    raise ValueError(f"template engine must be one of {TEMPLATE_ENGINES} (and installed), got {name!r}")


@cache
def default_renderer() -> Renderer:
    """The process-wide renderer over the shipped templates (built on first use, then reused)."""
    return Renderer()


def render(content: AdContent, fmt: str) -> Rendered:
    """Render with :func:`default_renderer`: ``render(content, "html").body``."""
    return default_renderer().render(content, fmt)

"""
Sphinx extension for superd's documentation: the configuration attributes.

Each attribute of the configuration reference is one ``confval`` with four
fields, all required (a missing one is a warning, which ``make docs`` turns
into an error)::

    .. confval:: per_source
       :type: a number, or ``UNLIMITED``
       :default: ``UNLIMITED``
       :scope: service defaults filled
       :xinetd: the same.

       What it does.

``:scope:`` is a set of words, checked against the attribute table by
``tests/docs/test_reference_complete.py`` and rendered as a sentence here:
``service`` (allowed in a service block), ``defaults`` (allowed in the
``defaults`` section), ``copied`` (copied into a service as its block
begins), ``filled`` (used by a service that does not set it), ``cumulative``
(several lines add up; ``+=`` and ``-=``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.domains.std import ConfigurationValue
from sphinx.util import logging
from sphinx.util.typing import OptionSpec

__all__ = ["SCOPE_WORDS", "AttributeDescription", "scope_text", "setup"]

logger = logging.getLogger(__name__)

#: The words of ``:scope:``.
SCOPE_WORDS = ("service", "defaults", "copied", "filled", "cumulative")
_REQUIRED = ("type", "default", "scope", "xinetd")


def scope_text(words: frozenset[str]) -> str:
    """Where an attribute may be written and how ``defaults`` reach a service."""
    if "service" in words and "defaults" not in words:
        where = "a service block only."
    elif "service" not in words:
        where = "the defaults section only (it applies to the whole daemon)."
    else:
        how = []
        if "copied" in words:
            how.append("copied into each service when its block begins (the service's"
                       " += and -= then change its copy)")
        if "filled" in words:
            how.append("used by every service that does not set it"
                       + (" when the defaults come after the service" if how else ""))
        where = "a service block, or the defaults section: " + "; ".join(how) + "."
    if "cumulative" in words:
        where += (" Cumulative: it may be written several times and the values add up;"
                  " += adds and -= removes values.")
    return where


class AttributeDescription(ConfigurationValue):
    """``confval`` with the fields every superd attribute has."""

    option_spec: ClassVar[OptionSpec] = {
        **ConfigurationValue.option_spec,
        "scope": directives.unchanged_required,
        "xinetd": directives.unchanged_required,
    }

    def run(self) -> list[nodes.Node]:
        missing = [name for name in _REQUIRED if name not in self.options]
        if missing:
            logger.warning("confval %s: missing %s", self.arguments[0],
                           ", ".join(f":{name}:" for name in missing),
                           location=self.get_location())
        words = self.options.get("scope", "").split()
        unknown = sorted(set(words) - set(SCOPE_WORDS))
        if unknown or ("service" not in words and "defaults" not in words):
            logger.warning("confval %s: :scope: takes %s, not %r", self.arguments[0],
                           " ".join(SCOPE_WORDS), " ".join(words),
                           location=self.get_location())
        return super().run()

    def transform_content(self, content_node: addnodes.desc_content) -> None:
        super().transform_content(content_node)
        fields = content_node.children[0] if content_node.children and isinstance(
            content_node.children[0], nodes.field_list) else None
        if fields is None:
            fields = nodes.field_list()
            content_node.insert(0, fields)
        if "scope" in self.options:
            fields += self._field("Where", nodes.Text(
                scope_text(frozenset(self.options["scope"].split()))))
        if "xinetd" in self.options:
            parsed, messages = self.parse_inline(self.options["xinetd"], lineno=self.lineno)
            fields += self._field("Compared with xinetd", *parsed)
            fields += messages

    def format_type(self, type_: str) -> tuple[nodes.field, list[nodes.system_message]]:
        parsed, messages = self.parse_inline(type_, lineno=self.lineno)
        return self._field("Values", *parsed), messages

    def format_default(self, default: str) -> tuple[nodes.field, list[nodes.system_message]]:
        # In a paragraph, as the other fields: the man page writer ends the
        # line only after one.
        parsed, messages = self.parse_inline(default, lineno=self.lineno)
        return self._field("Default", *parsed), messages

    @staticmethod
    def _field(name: str, *body: nodes.Node) -> nodes.field:
        return nodes.field("", nodes.field_name("", name),
                           nodes.field_body("", nodes.paragraph("", "", *body)))


def setup(app: Sphinx) -> dict[str, Any]:
    """Replace the standard ``confval`` with superd's."""
    app.add_directive_to_domain("std", "confval", AttributeDescription, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

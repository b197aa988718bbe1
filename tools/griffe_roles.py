"""A Griffe extension for the API reference (mkdocs.yml): the docstrings' reST in Markdown.

The package's docstrings are prose with Sphinx conventions: roles (``:func:`name```,
``:mod:`~a.b```), literal blocks after a paragraph ending in ``::``, and ``#:`` comments
that document a module's constants. mkdocstrings renders Markdown, so this extension, run
by Griffe while it reads the source (statically: nothing is imported), rewrites them:

* ``:role:`target``` becomes the cross-reference ``[`target`][target]`` and
  ``:role:`~a.b.c``` becomes ``[`c`][a.b.c]``; with ``scoped_crossrefs`` a short name
  resolves where the docstring stands, and ``mkdocs build --strict`` fails on a reference
  to something the reference does not document. A Python builtin (``:func:`open```)
  stays plain code.
* A line ending in ``::`` ends in ``:``, and a line that is only ``::`` is dropped; the
  indented block after it is a code block in Markdown as it is a literal block in reST.
* The ``#:`` comment lines just above a module or class attribute that has no docstring
  become its docstring.
* A name of a module's ``__all__`` that the module's ``__getattr__`` imports on first use
  (``ddim_keras.DiffusionModel``, so that ``import ddim_keras`` does not load Keras) becomes
  an alias of where it is defined, as if it were imported at the top.
"""

import builtins
import re

import griffe

#: First names of targets outside the package: plain code, not cross-references.
EXTERNAL = ("keras", "tensorflow", "tf", "jax", "torch", "numpy", "np", "PIL")
#: ``from MODULE import NAME`` inside a module's ``__getattr__``.
LAZY_IMPORT = re.compile(r"from\s+([\w.]+)\s+import\s+(\w+)")
ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj):`(~?)([\w.]+)(\(\))?`")


def _crossref(match):
    tilde, target, call = match.group(1), match.group(2), match.group(3) or ""
    title = target.rsplit(".", 1)[-1] if tilde else target
    if hasattr(builtins, target) or target.split(".")[0] in EXTERNAL:
        return f"`{title}{call}`"
    return f"[`{title}{call}`][{target}]"


def to_markdown(text):
    """The docstring ``text`` with its roles and literal-block markers in Markdown."""
    text = ROLE.sub(_crossref, text)
    lines = []
    for line in text.split("\n"):
        if line.strip() == "::":
            continue
        if line.endswith("::"):
            line = line[:-1]
        lines.append(line)
    return "\n".join(lines)


def comment_docstring(attribute):
    """The text of the ``#:`` lines right above ``attribute``'s definition, or None."""
    lines = attribute.parent.lines if attribute.parent is not None else []
    found = []
    index = (attribute.lineno or 0) - 2  # the line above, 0-based
    while 0 <= index < len(lines) and lines[index].strip().startswith("#:"):
        found.append(lines[index].strip()[2:].strip())
        index -= 1
    return "\n".join(reversed(found)) or None


def lazy_exports(module):
    """{name: target path} of the ``__all__`` names that ``module.__getattr__`` imports."""
    getattr_function = module.members.get("__getattr__")
    exported = module.exports or ()
    if getattr_function is None or not getattr_function.is_function:
        return {}
    source = "\n".join(getattr_function.lines)
    return {
        name: f"{origin}.{name}"
        for origin, name in LAZY_IMPORT.findall(source)
        if name in exported and name not in module.members
    }


class RestToMarkdown(griffe.Extension):
    """Give constants their ``#:`` comments, lazy exports their aliases, then rewrite every
    docstring."""

    def on_module(self, *, mod, **kwargs):
        for name, target in lazy_exports(mod).items():
            mod.set_member(name, griffe.Alias(name, target, parent=mod))

    def on_object(self, *, obj, **kwargs):
        if obj.is_attribute and obj.docstring is None:
            text = comment_docstring(obj)
            if text:
                obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)

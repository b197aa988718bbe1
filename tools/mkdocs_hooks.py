"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

The experiments report, ``experiments/README.md``, is written by ``python -m
ddim_keras.report`` beside the configs and results it links to, outside ``docs/``.

* :func:`on_files` puts the whole ``experiments/`` folder into the site as if it were
  ``docs/experiments/`` (``experiments/README.md`` becomes the page ``experiments/``),
  so the report is part of the site and its links to ``results/`` work.
* :func:`on_page_markdown` lets the pages link to those files by their place in the
  repository (``../experiments/README.md`` from ``docs/training.md``), which also works
  when the Markdown is read on its own: such a link is rewritten to the file's place in
  the site, and ``mkdocs build --strict`` then checks it like any other link.
"""

import os
import re

from mkdocs.structure.files import File

#: Folders of the repository (beside docs/) that the site includes.
FOLDERS = ("experiments",)
#: A Markdown inline link or image: ``](target)`` or ``](target "title")``.
LINK = re.compile(r"\]\(([^()\s]+)((?:\s+\"[^\"]*\")?)\)")


def _root(config):
    return os.path.dirname(os.path.abspath(config.config_file_path))


def on_files(files, config):
    root = _root(config)
    for folder in FOLDERS:
        for parent, dirs, names in os.walk(os.path.join(root, folder)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith("."):
                    path = os.path.join(parent, name)
                    uri = os.path.relpath(path, root).replace(os.sep, "/")
                    files.append(File.generated(config, uri, abs_src_path=path))
    return files


def site_link(target, page_uri, root, docs_dir):
    """``target`` as linked from the site page ``page_uri``: a relative link into one of
    :data:`FOLDERS` of the repository points at its copy in the site; others are kept."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^[#/]", target):
        return target
    path, _, anchor = target.partition("#")
    page_dir = os.path.dirname(os.path.join(docs_dir, page_uri))
    in_repo = os.path.relpath(os.path.normpath(os.path.join(page_dir, path)), root)
    if in_repo.split(os.sep)[0] not in FOLDERS:
        return target
    in_site = os.path.relpath(os.path.join(docs_dir, in_repo), page_dir).replace(os.sep, "/")
    return in_site + (f"#{anchor}" if anchor else "")


def on_page_markdown(markdown, page, config, files):
    if page.file.generated_by is not None:  # the report itself links within its folder
        return markdown
    root, docs_dir = _root(config), os.path.abspath(config.docs_dir)
    return LINK.sub(
        lambda m: f"]({site_link(m.group(1), page.file.src_uri, root, docs_dir)}{m.group(2)})",
        markdown,
    )

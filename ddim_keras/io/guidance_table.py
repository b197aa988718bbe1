"""The experiments report's "Classifier-free guidance" table: a conditional run's guided cells.

One row per guidance scale a run's sweep measured (``sweep --guidance``): the share
of samples that show the kind they were asked for (on ``shapes``, by the shapes
classifier; chance is the w = 0 row, whose samples ignore the class), the share the
classifier recognises, KID against the validation images of the same classes, and
KID per class. Every cell is read from the run's ``sweep.csv``.
"""

from ddim_keras.metrics.guidance import parse_per_class


def guided_rows(run):
    """The sweep rows of ``run`` measured with a guidance scale, by (sampler, steps, w)."""
    rows = {}
    for row in run.get("sweep") or []:
        if not row.get("guidance"):
            continue
        try:
            base = row["sampler"].rsplit(" w=", 1)[0]
            rows[(base, int(row["steps"]), float(row["guidance"]))] = row
        except (KeyError, ValueError):
            continue
    return rows


def _share(text):
    return f"{float(text):.0%}" if text else "-"


def guidance_table(runs, format_kid):
    """Markdown lines of the table (empty when no run has guided cells)."""
    lines = []
    for name, run in runs.items():
        rows = guided_rows(run)
        if not rows:
            continue
        if not lines:
            lines += [
                "### Classifier-free guidance",
                "",
                "Samples of the validation images' classes (image i asks for the class of"
                " validation image i), guided with scale w: 0 ignores the class (the"
                " unconditional prediction), 1 is the plain conditional model. **Shows the"
                " requested kind**: the shapes classifier sees the kind asked for (its output"
                " for it above 0.5); **recognised**: it recognises a shape confidently (real"
                " images: 88 %). KID against the validation images (shapes classifier"
                " features), and per class against that class's validation images.",
                "",
            ]
        classes = []
        for row in rows.values():
            classes += [c for c in parse_per_class(row.get("class_kids")) if c not in classes]
        header = ["sampler, steps", "w", "shows the requested kind", "recognised", "KID"]
        header += [f"KID {name_}" for name_ in classes]
        lines += [
            f"`{name}`:",
            "",
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
        ]
        for (sampler, steps, guidance), row in sorted(rows.items()):
            per_class = parse_per_class(row.get("class_kids"))
            cells = [
                f"{sampler}, {steps}",
                f"{guidance:g}",
                _share(row.get("requested")),
                _share(row.get("recognised")),
                format_kid(float(row["kid"])),
            ]
            cells += [
                "-" if per_class.get(c) is None else format_kid(per_class[c]) for c in classes
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines

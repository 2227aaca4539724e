"""Tables: Markdown for benchmark results and tuning reports, aligned text for the terminal."""


def formatted(row, columns):
    """A row's cells as text; a missing value (or None) is "-"."""
    return [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns]


def markdown_table(rows, columns):
    """`rows`: list of dicts; `columns`: list of (key, header, format) tuples."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(formatted(row, columns)) + " |" for row in rows]
    return "\n".join(lines)


def text_table(rows, columns):
    """The same table as aligned plain-text columns, each as wide as its widest cell,
    so numbers of any magnitude stay apart; the first column left-aligned."""
    cells = [[header for _, header, _ in columns]]
    cells += [formatted(row, columns) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            [line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        )
        for line in cells
    )

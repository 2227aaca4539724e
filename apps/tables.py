"""Markdown tables, for benchmark results and tuning reports."""


def markdown_table(rows, columns):
    """`rows`: list of dicts; `columns`: list of (key, header, format) tuples."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

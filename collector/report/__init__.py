"""What the store holds, rendered for people: the usage audit (`imflow report`) and the
`imflow top` listing.

The audit gives, per category and service, the internal hosts that used it, how much, when, and
what the policy says about it, as one self-contained HTML file, CSV or JSON. `build` reads and
shapes the data; `formats` writes it as JSON and CSV, `html` (with `charts`) as a page.
`tables` renders `imflow top` results and `human_bytes`.
"""

from collector.report.build import CATEGORY_NAMES, FORMAT_VERSION, build
from collector.report.charts import CATEGORY_COLOURS
from collector.report.formats import CSV_COLUMNS, render_csv, render_json
from collector.report.html import render_html
from collector.report.tables import human_bytes

__all__ = ["CATEGORY_COLOURS", "CATEGORY_NAMES", "CSV_COLUMNS", "FORMAT_VERSION", "build", "human_bytes",
           "render_csv", "render_html", "render_json"]
